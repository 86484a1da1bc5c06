using CTCal.Contracts;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.TrainerClient;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// Where the fine-tuner finds ctcal-train: the trainerPath setting first, then the sidecar a package carries in trainer/
/// beside the plugin, then PATH; and where its job file goes (beside the host's output folder, not the system temp folder).
/// </summary>
public sealed class TrainerLocatorTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-locator");

    public void Dispose() => Directory.Delete(_root, true);

    private string PackagedTrainer(string script)
    {
        string trainer = Path.Combine(_root, "plugin", TrainerLocator.PackagedFolder, TrainerLocator.FileName);
        Directory.CreateDirectory(Path.GetDirectoryName(trainer)!);
        File.WriteAllText(trainer, "#!/bin/sh\n" + script.Replace("\r", ""));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(trainer, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        return trainer;
    }

    [Fact]
    public void ThePackagedTrainerIsFoundBesideThePluginAndTheSettingStillWins()
    {
        string packaged = PackagedTrainer("exit 0");
        string plugin = Path.Combine(_root, "plugin");
        Assert.Equal(packaged, TrainerLocator.Packaged(plugin));
        Assert.Equal(packaged, TrainerLocator.Find(null, plugin));

        string configured = Path.Combine(_root, "tools", "my-trainer");
        Assert.Equal(configured, TrainerLocator.Find(configured, plugin));

        Assert.Null(TrainerLocator.Packaged(Path.Combine(_root, "elsewhere")));
        Assert.Null(TrainerLocator.Packaged(null));
    }

    [SkippableFact]
    public async Task AFineTuneWithoutTrainerPathRunsThePackagedTrainerAndLeavesNoJobFile()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        PackagedTrainer("""
            cfg=""; while [ $# -gt 0 ]; do [ "$1" = "--config" ] && cfg="$2"; shift; done
            out=$(sed -n 's/^ *"out": "\(.*\)",\{0,1\}$/\1/p' "$cfg")
            mkdir -p "$out/final/unet" && touch "$out/final/unet/diffusion_pytorch_model.safetensors"
            echo "{\"event\":\"start\",\"totalSteps\":1,\"message\":\"job $cfg\"}"
            echo '{"event":"done","steps":1,"final_weights":"final","cancelled":false,"exit_code":0}'
            """);
        var log = new RecordingLog();
        var runtime = new PluginRuntime(new PluginSettings { ModelsFolder = Path.Combine(_root, "models") }, log) { PluginDirectory = Path.Combine(_root, "plugin") };
        var tuner = new CtcalFineTuner(runtime, new NoExport());
        string baseModel = Path.Combine(_root, "base");
        Directory.CreateDirectory(baseModel);
        string run = Path.Combine(_root, "runs", "tuned");
        var messages = new List<string>();
        var result = await tuner.FineTuneAsync(new FineTuneRequest("tuned", new FineTuneJob { Model = baseModel, Data = Path.Combine(_root, "data"), Out = run, Steps = 1 }),
            new CTCal.Core.Threading.SynchronousProgress<OperationProgress>(p => messages.Add(p.Message ?? "")));

        Assert.Equal(1, result.Steps);
        Assert.Contains(log.Entries, e => e.Message.Contains(Path.Combine(_root, "plugin", "trainer", "ctcal-train")));
        string jobMessage = Assert.Single(messages, m => m.StartsWith("job ", StringComparison.Ordinal));
        Assert.Equal(Path.Combine(_root, "runs"), Path.GetDirectoryName(jobMessage[4..]));
        Assert.Empty(Directory.GetFiles(Path.Combine(_root, "runs"), "*ctcal-job*"));
    }

    [Fact]
    public void TheJobFileIsAHiddenFileBesideTheOutputFolder()
    {
        string run = Path.Combine(_root, "runs", "a");
        string job = CtcalFineTuner.JobFilePath(run + Path.DirectorySeparatorChar);
        Assert.Equal(Path.Combine(_root, "runs"), Path.GetDirectoryName(job));
        Assert.StartsWith(".a.ctcal-job-", Path.GetFileName(job), StringComparison.Ordinal);
        Assert.NotEqual(job, CtcalFineTuner.JobFilePath(run));
    }

    private sealed class NoExport : IModelExporter
    {
        public Task<ModelInfo> ExportAsync(ModelExportRequest request, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default) =>
            Task.FromResult(new ModelInfo(request.ModelId, request.ModelId, "/models/" + request.ModelId, "sd1", 512, 512, false));
    }
}

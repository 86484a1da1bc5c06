using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using CTCal.Host.Cli;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// The web front end in a real browser: <c>tests/browser/web-host.spec.mjs</c> (playwright-core on Node) drives Debian's
/// headless Chromium against <c>ctcal-host serve</c> started as its own process on a free loopback port, over a host
/// root with the plugin, the shipped tiny base model (<c>assets/base-model</c>) exported to ONNX and the real
/// <c>ctcal-train</c> as the plugin's trainer sidecar (<see cref="RealTrainer"/>): the page runs a short CTCal LoRA
/// fine-tune of the base on a small synthetic-world dataset, exports it with one click and generates from it. Needs <c>node</c>,
/// <c>tests/browser/node_modules</c> (<c>npm ci</c>) and <c>/usr/bin/chromium</c>: without them the test is skipped,
/// or fails under CI (<c>CI</c> set), saying how to install them. <c>CTCAL_WEB_SCREENSHOTS</c> names a folder for
/// one screenshot per page (docs/web-host is made this way).
/// </summary>
public sealed partial class BrowserTests : IDisposable
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(10);

    // The page's fine-tune: a few steps at the base's native 64 px (a 16x16 latent), so the real trainer stays short.
    private const int FineTuneSteps = 3, FineTuneResolution = 64;
    private readonly string _root = TestPaths.NewTempDir("ctcal-browser");

    public void Dispose() => Directory.Delete(_root, true);

    // A step line of the trainer's log: "step 2/3: loss 1.6956 (diffusion ...".
    [GeneratedRegex(@"\|step (\d+)/\d+: loss (\S+) ")]
    private static partial Regex TrainLogStep();

    private static string Chromium => Environment.GetEnvironmentVariable("CTCAL_CHROMIUM") ?? "/usr/bin/chromium";

    private static string BrowserTestFolder => Path.Combine(TestPaths.RepoRoot, "tests", "browser");

    /// <summary>What is missing to run the browser test, or null.</summary>
    private static string? Missing()
    {
        var missing = new List<string>();
        if (!OperatingSystem.IsLinux())
        {
            return "the browser test runs on Linux (Debian's chromium package)";
        }

        if (FindOnPath("node") is null)
        {
            missing.Add("node (apt-get install -y nodejs)");
        }

        if (!File.Exists(Chromium))
        {
            missing.Add($"{Chromium} (apt-get install -y chromium)");
        }

        if (!Directory.Exists(Path.Combine(BrowserTestFolder, "node_modules", "playwright-core")))
        {
            missing.Add("playwright-core (cd tests/browser && npm ci)");
        }

        return missing.Count == 0 ? null : "missing " + string.Join(", ", missing) + "; .ci/run installs them";
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);

    [SkippableFact]
    public void ModelsGenerateGalleryFineTuneExportCompareAndCancelInChromium()
    {
        string? missing = Missing();
        if (missing is not null)
        {
            Assert.True(Environment.GetEnvironmentVariable("CI") is null, $"CI run without the browser test's tools: {missing}");
            Skip.If(true, missing);
        }

        // The host root: the plugin, the real trainer, the shipped tiny base exported as tiny-base, and eight images of
        // the synthetic world (the base's own, 64 px) written by the trainer, for the page's fine-tune.
        PluginFolders.CopyPlugin(_root, "onnx");
        string trainer = RealTrainer.LinkInto(Path.Combine(_root, "tools", "ctcal-train"));
        string config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx", new { modelsFolder = "models", trainerPath = "tools/ctcal-train/ctcal-train", executionProviders = new[] { "cpu" } }));
        string baseModel = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        var exportOutput = new StringWriter();
        var log = new RecordingLog();
        int exported = HostCommands.Build(exportOutput, log, _ => log).Parse(["export", "--config", config, "--checkpoint", baseModel, "--id", "tiny-base"]).Invoke();
        Assert.True(exported == 0, exportOutput.ToString());
        string data = Path.Combine(_root, "data");
        RealTrainer.Invoke(trainer, "base", "dataset", "--out", data, "--count", "8", "--seed", "1");

        using var server = new HostProcess(_root, ["serve", "--config", config, "--port", "0", "--out", Path.Combine(_root, "gallery")]);
        Assert.True(server.WaitForLine("listening on "), server.Output);
        string url = server.Output.Split('\n').First(l => l.StartsWith("listening on ", StringComparison.Ordinal))["listening on ".Length..].Trim();

        var start = new ProcessStartInfo("node")
        {
            WorkingDirectory = BrowserTestFolder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("web-host.spec.mjs");
        start.Environment["CTCAL_URL"] = url;
        start.Environment["CTCAL_BASE"] = baseModel;
        start.Environment["CTCAL_DATA"] = data;
        start.Environment["CTCAL_RUN"] = Path.Combine(_root, "run");
        start.Environment["CTCAL_FT_STEPS"] = FineTuneSteps.ToString(CultureInfo.InvariantCulture);
        start.Environment["CTCAL_FT_RESOLUTION"] = FineTuneResolution.ToString(CultureInfo.InvariantCulture);
        start.Environment["CTCAL_CHROMIUM"] = Chromium;
        start.Environment["CTCAL_SCREENSHOTS"] = Environment.GetEnvironmentVariable("CTCAL_WEB_SCREENSHOTS") ?? Path.Combine(_root, "screenshots");
        using var node = Process.Start(start)!;
        var stdout = node.StandardOutput.ReadToEndAsync();
        var stderr = node.StandardError.ReadToEndAsync();
        if (!node.WaitForExit(HangGuard))
        {
            node.Kill(entireProcessTree: true);
        }

        node.WaitForExit();
        string report = $"node exit {node.ExitCode}\n{stdout.Result}\n{stderr.Result}\nserver output:\n{server.Output}";
        Assert.True(node.ExitCode == 0, report);
        Assert.Contains("browser test passed", stdout.Result);

        server.Terminate();
        Assert.Equal(0, server.WaitForExit());

        // The fine-tune was the trainer's: its job has the page's resolution and steps, it wrote LoRA weights, and the
        // loss curve on the page shows the losses its log records for each step.
        string run = Path.Combine(_root, "run");
        using (var trainConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "train_config.json"))))
        {
            Assert.Equal(FineTuneResolution, trainConfig.RootElement.GetProperty("resolution").GetInt32());
            Assert.Equal(FineTuneSteps, trainConfig.RootElement.GetProperty("steps").GetInt32());
        }

        Assert.True(File.Exists(Path.Combine(run, "pytorch_lora_weights.safetensors")), report);
        var logged = File.ReadLines(Path.Combine(run, "train.log")).Select(l => TrainLogStep().Match(l)).Where(m => m.Success)
            .Select(m => (Step: int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), Loss: double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))).ToList();
        string pageLine = stdout.Result.Split('\n').Single(l => l.StartsWith("page losses: ", StringComparison.Ordinal));
        var onPage = JsonSerializer.Deserialize<double[][]>(pageLine["page losses: ".Length..])!;
        Assert.Equal(Enumerable.Range(1, FineTuneSteps), logged.Select(s => s.Step));
        Assert.Equal(logged.Select(s => (double)s.Step), onPage.Select(p => p[0]));
        foreach (var (step, loss) in logged)
        {
            // The log prints 5 significant digits, the page too: they agree to rounding.
            Assert.True(Math.Abs(onPage[step - 1][1] - loss) <= 2e-4 * Math.Abs(loss), $"step {step}: page {onPage[step - 1][1]}, train.log {loss}");
        }
    }
}

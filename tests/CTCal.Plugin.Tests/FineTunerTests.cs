using CTCal.Contracts;
using CTCal.Core.Threading;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.TrainerClient;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>The whole fine-tune flow with a fake trainer script and a recording exporter.</summary>
public sealed class FineTunerTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-ft");

    public void Dispose() => Directory.Delete(_root, true);

    private sealed class RecordingExporter : IModelExporter
    {
        public List<ModelExportRequest> Requests { get; } = new();

        public Task<ModelInfo> ExportAsync(ModelExportRequest request, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
        {
            Requests.Add(request);
            return Task.FromResult(new ModelInfo(request.ModelId, request.ModelId, "/models/" + request.ModelId, "sd1", 512, 512, false));
        }
    }

    private (CtcalFineTuner Tuner, RecordingExporter Exporter) Create(string trainerScript)
    {
        string trainer = Path.Combine(_root, "ctcal-train");
        File.WriteAllText(trainer, "#!/bin/sh\n" + trainerScript.Replace("\r", ""));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(trainer, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        var runtime = new PluginRuntime(new PluginSettings { ModelsFolder = Path.Combine(_root, "models"), TrainerPath = trainer }, new RecordingLog());
        var exporter = new RecordingExporter();
        return (new CtcalFineTuner(runtime, exporter), exporter);
    }

    private FineTuneRequest Request()
    {
        string baseModel = Path.Combine(_root, "base");
        Directory.CreateDirectory(baseModel);
        return new FineTuneRequest("tuned", new FineTuneJob { Model = baseModel, Data = Path.Combine(_root, "data"), Out = Path.Combine(_root, "run"), Steps = 2 });
    }

    [SkippableFact]
    public async Task DoneEventExportsTheUnetOverTheBaseCheckpoint()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        var (tuner, exporter) = Create("""
            out=""
            cfg=""; while [ $# -gt 0 ]; do [ "$1" = "--config" ] && cfg="$2"; shift; done
            out=$(sed -n 's/^ *"out": "\(.*\)",\{0,1\}$/\1/p' "$cfg")
            mkdir -p "$out/final/unet" && touch "$out/final/unet/diffusion_pytorch_model.safetensors"
            echo '{"event":"start","totalSteps":2}'
            echo '{"event":"step","step":1,"loss":0.3}'
            echo '{"event":"step","step":2,"loss":0.2}'
            echo '{"event":"done","steps":2,"final_weights":"final","cancelled":false,"exit_code":0}'
            """);
        var stages = new List<string>();
        var request = Request();
        var result = await tuner.FineTuneAsync(request, new SynchronousProgress<OperationProgress>(p => stages.Add(p.Stage)));

        Assert.Equal(2, result.Steps);
        Assert.Equal(Path.Combine(request.Job.Out!, "final"), result.CheckpointFolder);
        Assert.Equal("tuned", result.Model.Id);
        var export = Assert.Single(exporter.Requests);
        Assert.Equal(request.Job.Model, export.CheckpointFolder);
        Assert.Equal(Path.Combine(request.Job.Out!, "final", "unet", "diffusion_pytorch_model.safetensors"), export.UnetWeights);
        Assert.True(export.Overwrite);
        Assert.Equal(new[] { "start", "step", "step", "done", "export" }, stages);
    }

    [SkippableFact]
    public async Task FinalWeightsThatAreADiffusersFolderAreExportedAsTheCheckpoint()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        // final_weights names a folder (relative to the run folder) holding a whole diffusers checkpoint.
        var (tuner, exporter) = Create("""
            out=""
            cfg=""; while [ $# -gt 0 ]; do [ "$1" = "--config" ] && cfg="$2"; shift; done
            out=$(sed -n 's/^ *"out": "\(.*\)",\{0,1\}$/\1/p' "$cfg")
            mkdir -p "$out/merged/unet" && echo '{"_class_name": "StableDiffusionPipeline"}' > "$out/merged/model_index.json"
            touch "$out/merged/unet/diffusion_pytorch_model.safetensors"
            echo '{"event":"done","steps":3,"final_weights":"merged","cancelled":false,"exit_code":0}'
            """);
        var request = Request();
        var result = await tuner.FineTuneAsync(request);

        string merged = Path.Combine(request.Job.Out!, "merged");
        Assert.Equal(merged, result.CheckpointFolder);
        var export = Assert.Single(exporter.Requests);
        Assert.Equal(merged, export.CheckpointFolder);
        Assert.Null(export.UnetWeights);
        Assert.Null(export.Loras);
        Assert.Equal("tuned", export.ModelId);
        Assert.True(export.Overwrite);
    }

    [SkippableFact]
    public async Task FailedTrainingExportsNothing()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        var (tuner, exporter) = Create("""
            echo '{"event":"error","kind":"bad_input","message":"dataset is empty","exit_code":2}'
            exit 1
            """);
        var ex = await Assert.ThrowsAsync<FineTuneException>(() => tuner.FineTuneAsync(Request()));
        Assert.Contains("dataset is empty", ex.Message);
        Assert.Empty(exporter.Requests);
    }

    [SkippableFact]
    public async Task DoneWithAnUnusableCheckpointIsAnError()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        var (tuner, exporter) = Create("""
            echo '{"event":"done","steps":1,"final_weights":"nowhere"}'
            """);
        var ex = await Assert.ThrowsAsync<FineTuneException>(() => tuner.FineTuneAsync(Request()));
        Assert.Contains("nowhere", ex.Message);
        Assert.Empty(exporter.Requests);
    }

    [Theory]
    [InlineData("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora_A.weight", "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora_B.weight")]
    [InlineData("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight")]
    [InlineData("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora.down.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora.up.weight")]
    [InlineData("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q.lora_down.weight", "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q.lora_up.weight")]
    [InlineData("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight")]
    public void LoraInEverySpellingIsExportedAsALora(string down, string up)
    {
        var request = Request();
        string lora = Path.Combine(_root, "lora.safetensors");
        CTCal.Core.Safetensors.SafetensorsWriter.Write(lora, new[]
        {
            CTCal.Core.Safetensors.SafetensorsWriteEntry.FromFloat32(down, new long[] { 1, 2 }, new float[] { 1, 2 }),
            CTCal.Core.Safetensors.SafetensorsWriteEntry.FromFloat32(up, new long[] { 2, 1 }, new float[] { 1, 2 }),
        });
        var export = CtcalFineTuner.ExportRequestFor(lora, request);
        Assert.Equal(new[] { lora }, export.Loras);
        Assert.Null(export.UnetWeights);
    }

    [Fact]
    public void LoraAndFullWeightsAreExportedDifferently()
    {
        var request = Request();
        string lora = Path.Combine(_root, "pytorch_lora_weights.safetensors");
        CTCal.Core.Safetensors.SafetensorsWriter.Write(lora, new[]
        {
            CTCal.Core.Safetensors.SafetensorsWriteEntry.FromFloat32("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora_A.weight", new long[] { 1, 2 }, new float[] { 1, 2 }),
            CTCal.Core.Safetensors.SafetensorsWriteEntry.FromFloat32("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora_B.weight", new long[] { 2, 1 }, new float[] { 1, 2 }),
        });
        string full = Path.Combine(_root, "diffusion_pytorch_model.safetensors");
        CTCal.Core.Safetensors.SafetensorsWriter.Write(full, new[]
        {
            CTCal.Core.Safetensors.SafetensorsWriteEntry.FromFloat32("conv_in.weight", new long[] { 2 }, new float[] { 1, 2 }),
        });

        var fromLora = CtcalFineTuner.ExportRequestFor(lora, request);
        Assert.Equal(request.Job.Model, fromLora.CheckpointFolder);
        Assert.Equal(new[] { lora }, fromLora.Loras);
        Assert.Null(fromLora.UnetWeights);

        var fromFull = CtcalFineTuner.ExportRequestFor(full, request);
        Assert.Equal(full, fromFull.UnetWeights);
        Assert.Null(fromFull.Loras);
    }

    /// <summary>
    /// The exported model records the method the trainer reported in its start event: a vanilla fine-tune is labelled
    /// vanilla (every fine-tune used to be labelled "ctcal"), a CTCal one ctcal, and one whose trainer says nothing is not
    /// labelled at all.
    /// </summary>
    [SkippableTheory]
    [InlineData("vanilla", "vanilla")]
    [InlineData("ctcal", "ctcal")]
    [InlineData(null, null)]
    public async Task TheExportRecordsTheMethodTheTrainerReported(string? method, string? recorded)
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string start = method is null ? """{"event":"start","total_steps":1}""" : $$"""{"event":"start","total_steps":1,"method":"{{method}}"}""";
        var (tuner, exporter) = Create($$"""
            out=""
            cfg=""; while [ $# -gt 0 ]; do [ "$1" = "--config" ] && cfg="$2"; shift; done
            out=$(sed -n 's/^ *"out": "\(.*\)",\{0,1\}$/\1/p' "$cfg")
            mkdir -p "$out/final/unet" && touch "$out/final/unet/diffusion_pytorch_model.safetensors"
            echo '{{start}}'
            echo '{"event":"done","steps":1,"final_weights":"final","cancelled":false,"exit_code":0}'
            """);
        await tuner.FineTuneAsync(Request());
        Assert.Equal(recorded, Assert.Single(exporter.Requests).Method);
    }

    /// <summary>
    /// Every value of the job travels in the job file: the trainer's command line is <c>train --config &lt;file&gt;</c> whatever
    /// the values hold, the file reads back as the request's job with progress json, and it is gone afterwards.
    /// </summary>
    [SkippableFact]
    public async Task JobValuesTravelInTheJobFileNotOnTheCommandLine()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string received = Path.Combine(_root, "received.txt");
        string copy = Path.Combine(_root, "job-copy.json");
        string pwned = Path.Combine(_root, "pwned");
        var (tuner, _) = Create($$"""
            printf '%s\n' "$@" > '{{received}}'
            cp "$3" '{{copy}}'
            out=$(sed -n 's/^ *"out": "\(.*\)",\{0,1\}$/\1/p' "$3")
            mkdir -p "$out/final/unet" && touch "$out/final/unet/diffusion_pytorch_model.safetensors"
            echo '{"event":"done","steps":2,"final_weights":"final","cancelled":false,"exit_code":0}'
            """);
        string[] hostile = ["$(touch " + pwned + ")", "`touch " + pwned + "`", "; touch " + pwned, "--out=/etc", "a \"quoted\" b"];
        var request = Request() with { };
        request = request with { Job = request.Job with { ValidationPrompts = hostile, Seed = 7 } };
        await tuner.FineTuneAsync(request);

        string[] args = File.ReadAllLines(received);
        Assert.Equal(3, args.Length);
        Assert.Equal(["train", "--config"], args[..2]);
        Assert.False(File.Exists(args[2]), "the job file is removed once the trainer has finished");
        var sent = FineTuneJobJson.Read(copy);
        Assert.Equal(request.Job with { Progress = "json" }, sent with { ValidationPrompts = request.Job.ValidationPrompts });
        Assert.Equal(hostile, sent.ValidationPrompts);
        Assert.False(File.Exists(pwned), "a value was run by a shell");
    }

    [Fact]
    public async Task AnInvalidJobIsRefusedBeforeAnyProcessStarts()
    {
        var (tuner, exporter) = Create("touch '" + Path.Combine(_root, "started") + "'");
        var request = Request();
        var e = await Assert.ThrowsAsync<ArgumentException>(() => tuner.FineTuneAsync(request with { Job = request.Job with { Steps = 0, Distance = "cosine" } }));
        Assert.Contains("steps must be positive (got 0)", e.Message);
        Assert.Contains("distance 'cosine' is not one of mse, l1, kl", e.Message);
        Assert.False(File.Exists(Path.Combine(_root, "started")));
        Assert.Empty(exporter.Requests);
    }

    [Fact]
    public async Task AFullFineTuneOfAnSD3BaseIsRefusedBeforeAnyProcessStarts()
    {
        var (tuner, exporter) = Create("touch '" + Path.Combine(_root, "started") + "'");
        var request = Request();
        File.WriteAllText(Path.Combine(request.Job.Model!, "model_index.json"), """{"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.29.2"}""");
        var e = await Assert.ThrowsAsync<ArgumentException>(() => tuner.FineTuneAsync(request with { Job = request.Job with { Full = true } }));
        Assert.Contains(request.Job.Model!, e.Message);
        Assert.Contains("SD3", e.Message);
        Assert.False(File.Exists(Path.Combine(_root, "started")));
        Assert.Empty(exporter.Requests);
    }
}

using System.CommandLine;
using CTCal.Export.Fixtures;
using CTCal.Export.Onnx;
using CTCal.Host.Cli;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

public sealed class CliTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-cli");

    public void Dispose() => Directory.Delete(_root, true);

    private (int Code, string Output) Run(params string[] args)
    {
        var output = new StringWriter();
        var log = new RecordingLog();
        var root = HostCommands.Build(output, log, _ => log);
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = output });
        return (code, output.ToString());
    }

    [Theory]
    [InlineData("plugins")]
    [InlineData("models")]
    [InlineData("generate")]
    [InlineData("export")]
    [InlineData("finetune")]
    [InlineData("bench")]
    [InlineData("load")]
    public void EveryVerbHasHelp(string verb)
    {
        var (code, output) = Run(verb, "--help");
        Assert.Equal(0, code);
        Assert.Contains(verb, output);
        Assert.Contains("--config", output);
    }

    [Fact]
    public void PluginsModelsAndGenerateWork()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        string config = PluginFolders.WritePluginsJson(
            _root,
            PluginFolders.Entry("ctcal.onnx", "onnx"),
            PluginFolders.Entry("broken", "nothing-here"));

        var (code, output) = Run("plugins", "--config", config);
        Assert.Equal(0, code);
        Assert.Contains("ctcal.onnx.generator", output);
        Assert.Contains("warning: plugin broken", output);

        (code, output) = Run("models", "--config", config, "--plugin", "ctcal.onnx");
        Assert.Equal(0, code);
        Assert.Contains("tiny", output);

        string outDir = Path.Combine(_root, "out");
        (code, output) = Run("generate", "--config", config, "-m", "tiny", "--prompt", "a cube", "--width", "64", "--height", "32",
            "--steps", "2", "--seed", "5", "-n", "2", "-o", outDir);
        Assert.True(code == 0, output);
        Assert.Contains("provider CPU", output);
        Assert.True(File.Exists(Path.Combine(outDir, "tiny-5.png")));
        Assert.True(File.Exists(Path.Combine(outDir, "tiny-6.png")));
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp"));

        // The hand-made model has no VAE encoder: image-to-image is refused with a clear message.
        (code, output) = Run("generate", "--config", config, "-m", "tiny", "--prompt", "a cube", "--init-image", Path.Combine(outDir, "tiny-5.png"), "-o", outDir);
        Assert.Equal(2, code);
        Assert.Contains("vae_encoder", output);

        // --step-cache reaches the plugin as "tiny?stepCache=2"; a model without the step-cache graphs is refused saying how to export them.
        (code, output) = Run("generate", "--config", config, "-m", "tiny", "--prompt", "a cube", "--step-cache", "2", "-o", outDir);
        Assert.Equal(2, code);
        Assert.Contains("Model 'tiny' was exported without the step-cache graphs", output);
        Assert.Contains("--step-cache-branch", output);
    }

    [Fact]
    public void ExportVerbRegistersTheModel()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        string config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));
        var (code, output) = Run("export", "--config", config, "--checkpoint", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--id", "tiny-sd1");
        Assert.True(code == 0, output);
        Assert.Contains("exported tiny-sd1", output);
        Assert.DoesNotContain("warning", output);

        (code, output) = Run("models", "--config", config);
        Assert.Equal(0, code);
        Assert.Contains("tiny-sd1  sd1 32x32", output);

        (code, output) = Run("export", "--config", config, "--checkpoint", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--id", "tiny-sd1");
        Assert.Equal(2, code);
        Assert.Contains("already exists", output);
    }

    /// <summary>
    /// The command, <c>generate --width 4096 --height 4096</c>, on a plugin capped at 32 MiB (memoryLimitMiB): the
    /// first UNet convolution at that size already needs more, so it fails the same way every run.
    /// </summary>
    [Fact]
    public void AnOutOfMemoryRequestIsOneClearErrorWithItsOwnExitCode()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        string config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry(
            "ctcal.onnx", "onnx", new { modelsFolder = "models", executionProviders = new[] { "cpu" }, memoryLimitMiB = 32, intraOpThreads = 1 }));
        var (code, output) = Run("export", "--config", config, "--checkpoint", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--id", "tiny-sd1");
        Assert.True(code == 0, output);

        string outDir = Path.Combine(_root, "out");
        (code, output) = Run("generate", "--config", config, "-m", "tiny-sd1", "--prompt", "a cube", "--width", "4096", "--height", "4096",
            "--steps", "2", "--seed", "1", "-n", "2", "-o", outDir);
        Assert.True(code == HostCommands.OutOfMemoryExitCode, output);
        Assert.Contains("error: Not enough memory to generate 4096x4096 with model 'tiny-sd1' on CPU (2 image(s)", output);
        Assert.Contains("memoryLimitMiB 32", output);
        Assert.Contains("lower Width and Height", output);
        Assert.DoesNotContain("OnnxRuntimeException", output);
        Assert.DoesNotContain("onnxruntime_src", output);
        Assert.DoesNotContain("   at ", output);
        Assert.False(Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any());

        (code, output) = Run("generate", "--config", config, "-m", "tiny-sd1", "--prompt", "a cube", "--width", "32", "--height", "32",
            "--steps", "2", "--seed", "1", "-o", outDir);
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(outDir, "tiny-sd1-1.png")));
    }

    [SkippableFact]
    public void FineTuneVerbRunsTheTrainerThenExportsAndRegisters()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");

        // A stand-in for ctcal-train speaking the progress protocol: it "trains" by copying the base UNet weights.
        StandInTrainer.CopyingBaseUnet(Path.Combine(_root, "tools", "ctcal-train"), steps: 2);

        PluginFolders.CopyPlugin(_root, "onnx");
        string config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx", new { modelsFolder = "models", trainerPath = "tools/ctcal-train", executionProviders = new[] { "cpu" } }));
        var (code, output) = Run("finetune", "--config", config, "--base", Path.Combine(TestPaths.Fixtures, "tiny-sd1"),
            "--data", Path.Combine(_root, "data"), "--output", Path.Combine(_root, "run"), "--id", "tiny-ctcal", "--max-steps", "2");
        Assert.True(code == 0, output);
        Assert.Contains("step 2/2 loss=0.25", output);
        Assert.Contains("model tiny-ctcal registered", output);

        (code, output) = Run("generate", "--config", config, "-m", "tiny-ctcal", "--prompt", "a cube", "--width", "64", "--height", "64",
            "--steps", "2", "--seed", "1", "-o", Path.Combine(_root, "out"));
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(_root, "out", "tiny-ctcal-1.png")));
    }

    /// <summary>
    /// An SD3 base through the same path: the stand-in trainer reports a LoRA on the transformer (peft keys, as the SD3
    /// trainer writes them), the plugin merges it into the SD3 export, registers it, and the model generates.
    /// </summary>
    [SkippableFact]
    public void FineTuneVerbOnAnSD3BaseExportsTheLoraAndTheModelGenerates()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string sd3 = TinySd3Folder.Write(Path.Combine(_root, "sd3-base"), seed: 11);
        string lora = Path.Combine(_root, "lora.safetensors");
        RandomWeights.Write(lora, [
            new WeightRequirement("transformer.transformer_blocks.0.attn.to_q.lora_A.weight", [2, 8]),
            new WeightRequirement("transformer.transformer_blocks.0.attn.to_q.lora_B.weight", [8, 2]),
        ], seed: 12);

        StandInTrainer.Write(Path.Combine(_root, "tools", "ctcal-train"), $$"""
            echo '{"event":"start","totalSteps":1}'
            echo '{"event":"step","step":1,"totalSteps":1,"loss":0.7}'
            mkdir -p "$out" && cp '{{lora}}' "$out/pytorch_lora_weights.safetensors"
            echo "{\"event\":\"done\",\"steps\":1,\"final_weights\":\"$out/pytorch_lora_weights.safetensors\",\"cancelled\":false,\"exit_code\":0}"
            """);

        PluginFolders.CopyPlugin(_root, "onnx");
        string config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx", new { modelsFolder = "models", trainerPath = "tools/ctcal-train", executionProviders = new[] { "cpu" } }));
        var (code, output) = Run("finetune", "--config", config, "--base", sd3,
            "--data", Path.Combine(_root, "data"), "--output", Path.Combine(_root, "run"), "--id", "sd3-lora", "--max-steps", "1");
        Assert.True(code == 0, output);
        Assert.Contains("step 1/1 loss=0.7", output);
        Assert.Contains("model sd3-lora registered", output);
        Assert.Contains("pytorch_lora_weights.safetensors", File.ReadAllText(Path.Combine(_root, "models", "sd3-lora", "ctcal_manifest.json")));

        (code, output) = Run("generate", "--config", config, "-m", "sd3-lora", "--prompt", "a cube", "--width", "16", "--height", "16",
            "--steps", "2", "--seed", "1", "-o", Path.Combine(_root, "out"));
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(_root, "out", "sd3-lora-1.png")));
    }

    [Fact]
    public void BadInputIsReportedWithFileAndField()
    {
        string config = Path.Combine(_root, "plugins.json");
        File.WriteAllText(config, """{ "version": 1, "plugins": [ { "id": "x", "path": "../up", "assembly": "x.dll" } ] }""");
        var (code, output) = Run("plugins", "--config", config);
        Assert.Equal(2, code);
        Assert.Contains($"{config}: plugins[0].path", output);

        PluginFolders.CopyPlugin(_root, "onnx");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));
        (code, output) = Run("generate", "--config", config, "-m", "tiny", "--prompt", "x", "--width", "63");
        Assert.Equal(2, code);
        Assert.Contains("Width", output);
    }

    [Theory]
    [InlineData("bench")]
    [InlineData("load")]
    [InlineData("models")]
    public void ABrokenPluginsFileIsABadInputErrorForEveryVerb(string verb)
    {
        string config = Path.Combine(_root, "plugins.json");
        File.WriteAllText(config, """{ "version": 1, "plugins": [ { "id": "x", "path": "/etc", "assembly": "x.dll" } ] }""");
        string[] args = verb == "models" ? [verb, "--config", config] : [verb, "--config", config, "-m", "tiny"];
        var (code, output) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains($"{config}: plugins[0].path", output);
        Assert.DoesNotContain("   at ", output);
    }
}

using CTCal.Core.Models;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary><c>--init-lora</c>: continuing a LoRA written in peft or kohya keys, on exactly its modules, from its weights.</summary>
public sealed class InitialLoraTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-init-lora");
    private readonly StringWriter _out = new();
    private readonly StringWriter _err = new();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private TrainerCli Cli() => new(_ => new ToyDiffusionModel(), _out, _err);

    private string[] Train(string data, string output, params string[] extra) =>
        ["train", "--model", "toy", "--data", data, "--out", output, "--resolution", "8", "--batch-size", "2", "--lora-rank", "2",
         "--layers", "all", "--progress", "json", "--steps", "2", "--save-every", "0", "--lr", "0.05", "--seed", "3", .. extra];

    /// <summary>A trained LoRA (2 steps at a high rate, so its up factors are far from zero) in <paramref name="format"/>.</summary>
    private string TrainedLora(string data, string format, params string[] extra)
    {
        string output = Path.Combine(_dir, $"first-{format}-{extra.Length}");
        int code = Cli().Run(Train(data, output, ["--lora-format", format, .. extra]));
        Assert.True(code == ExitCodes.Ok, _err.ToString());
        return Path.Combine(output, LoraFile.DefaultName);
    }

    private static TrainingOptions Options(string? initial, bool textEncoder = false) => new()
    {
        Steps = 1, BatchSize = 2, Lora = new LoraOptions { Rank = 2, TextEncoder = textEncoder }, SaveEvery = 0, Layers = ["all"], InitialLora = initial,
    };

    [Fact]
    public void ARunStartsFromTheFilesFactorsWhetherItIsSpelledPeftOrKohya()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string peft = TrainedLora(data, "peft", "--train-text-encoder");
        string kohya = TrainedLora(data, "kohya", "--train-text-encoder");
        var expected = TensorFile.Load(peft, out _);
        try
        {
            Assert.Contains(expected.Keys, k => k.StartsWith("text_encoder.", StringComparison.Ordinal));
            Assert.Contains(expected, kv => kv.Key.Contains("lora_B", StringComparison.Ordinal) && kv.Value.abs().max().item<float>() > 1e-4);
            foreach (string file in new[] { peft, kohya })
            {
                using var model = new ToyDiffusionModel();
                var dataset = ImageCaptionDataset.Open(data, resolution: 8);
                using var run = new TrainingRun(model, dataset, Options(file, textEncoder: true), Path.Combine(_dir, "run-" + Path.GetFileName(Path.GetDirectoryName(file))));
                var entries = run.UNetLora!.StateEntries().Concat(run.TextEncoderLora!.StateEntries()).ToList();
                Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), entries.Select(e => e.Key).Order(StringComparer.Ordinal));
                foreach (var (key, value) in entries)
                    Assert.True(value.equal(expected[key]).all().item<bool>(), $"{file}: {key} differs from the trained factor");
            }
        }
        finally
        {
            foreach (var t in expected.Values) t.Dispose();
        }
    }

    [Fact]
    public void ALoraOnSomeModulesIsContinuedOnExactlyThoseAndWrittenBackInTheAskedSpelling()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string full = TrainedLora(data, "peft");
        // Keep the to_k factors only: a LoRA another tool made on fewer modules than the trainer's defaults.
        var all = TensorFile.Load(full, out var metadata);
        string subset = Path.Combine(_dir, "subset", "to_k.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(subset)!);
        var kept = all.Where(kv => kv.Key.Contains(".to_k.", StringComparison.Ordinal)).Select(kv => (kv.Key, kv.Value)).ToList();
        Assert.Equal(4, kept.Count); // down and mid blocks, A and B
        TensorFile.Save(subset, kept, metadata);
        foreach (var t in all.Values) t.Dispose();

        string output = Path.Combine(_dir, "continued");
        int code = Cli().Run(Train(data, output, "--init-lora", subset, "--lora-format", "kohya"));
        Assert.True(code == ExitCodes.Ok, _err.ToString());
        var written = TensorFile.Load(Path.Combine(output, LoraFile.DefaultName), out _);
        try
        {
            var modules = written.Keys.Where(k => k.EndsWith(".lora_down.weight", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(["lora_unet_down_attn2_to_k.lora_down.weight", "lora_unet_mid_attn2_to_k.lora_down.weight"], modules);
        }
        finally
        {
            foreach (var t in written.Values) t.Dispose();
        }
        var job = CTCal.Contracts.FineTuneJobJson.Read(Path.Combine(output, "train_config.json"));
        Assert.Equal(Path.GetFullPath(subset), job.InitLora);
    }

    [Theory]
    [InlineData("rank", "the LoRA has rank 2 but the run's is 3; pass --lora-rank 2")]
    [InlineData("alpha", "the LoRA has alpha 2 but the run's is 5; pass --lora-alpha 2")]
    [InlineData("text", "the LoRA adapts the text encoder")]
    [InlineData("conv", "'conv_in' of the unet is not a linear layer of this model")]
    [InlineData("sd3", "the LoRA adapts 'text_encoder_2', a part this model does not have")]
    [InlineData("inside", "must not be, contain or lie inside --init-lora")]
    [InlineData("full", "init-lora continues a LoRA and cannot be combined with full")]
    public void AnInitLoraThatCannotBeContinuedIsRefusedBeforeTheOutputIsTouched(string fault, string message)
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string lora = TrainedLora(data, "peft", fault == "text" ? ["--train-text-encoder"] : []);
        if (fault == "sd3")
        {
            // an SD3 LoRA's second-text-encoder keys (diffusers' spelling) next to this run's UNet modules
            lora = WithExtraPair(lora, "sd3", "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", [2, 32], [32, 2]);
        }
        if (fault == "conv")
        {
            lora = WithExtraPair(lora, "conv", "unet.conv_in", [2, 4], [8, 2]);
        }
        string output = fault == "inside" ? Path.GetDirectoryName(lora)! : Path.Combine(_dir, "refused");
        byte[]? before = fault == "inside" ? File.ReadAllBytes(lora) : null;
        string[] extra = fault switch
        {
            "alpha" => ["--lora-alpha", "5"],
            "full" => ["--full"],
            _ => [],
        };
        string[] args = [.. Train(data, output, ["--init-lora", lora]), .. extra];
        if (fault == "rank") args[Array.IndexOf(args, "--lora-rank") + 1] = "3";
        Assert.Equal(ExitCodes.BadInput, Cli().Run(args));
        Assert.Contains(message, _err.ToString());
        if (before is null) Assert.False(Directory.Exists(output));
        else Assert.Equal(before, File.ReadAllBytes(lora));
    }

    /// <summary>A copy of <paramref name="lora"/> in <c>&lt;dir&gt;/&lt;name&gt;/</c> with one more zero LoRA pair (<c>{module}.lora_A/B.weight</c>).</summary>
    private string WithExtraPair(string lora, string name, string module, long[] downShape, long[] upShape)
    {
        var tensors = TensorFile.Load(lora, out var metadata);
        using var down = zeros(downShape);
        using var up = zeros(upShape);
        string copy = Path.Combine(_dir, name, name + ".safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
        TensorFile.Save(copy, tensors.Select(kv => (kv.Key, kv.Value))
            .Append(($"{module}.lora_A.weight", down)).Append(($"{module}.lora_B.weight", up)), metadata);
        foreach (var t in tensors.Values) t.Dispose();
        return copy;
    }
}

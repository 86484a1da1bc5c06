using System.Text.Json;
using CTCal.BaseModel;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Text;
using CTCal.Synthetic;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Data;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

public sealed class BaseModelTokenizerTests
{
    [Fact]
    public void WorldTokenizer_GivesEveryGrammarWordOneToken()
    {
        var world = WorldTokenizer.ForSyntheticWorld();
        string dir = TestPaths.NewTempDir();
        world.Write(dir);
        var tokenizer = ClipTokenizer.FromFiles(Path.Combine(dir, "vocab.json"), Path.Combine(dir, "merges.txt"));
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(dir, "vocab.json")))!;

        Assert.InRange(world.VocabularySize, 512 + world.Words.Count + 2, 800);
        Assert.Contains("triangles", world.Words);
        Assert.Contains("left", world.Words);
        Assert.Equal(world.VocabularySize, tokenizer.VocabularySize);
        Assert.Equal(world.BosId, tokenizer.BosId);
        Assert.Equal(world.EosId, tokenizer.EosId);
        foreach (var caption in SyntheticWorld.EnumerateGroups().SelectMany(g => g).Select(CaptionGrammar.Caption))
        {
            string[] words = caption.Split(' ');
            var ids = tokenizer.EncodeWithoutSpecials(caption);
            Assert.Equal(words.Select(w => vocab[w + "</w>"]), ids);
        }
        var encoded = tokenizer.Encode("a red circle");
        Assert.Equal(77, encoded.InputIds.Length);
        Assert.Equal(world.BosId, encoded.InputIds[0]);
        Assert.Equal(world.EosId, encoded.InputIds[4]);
    }

    [Fact]
    public void WorldTokenizer_StillTokenizesAnyText()
    {
        var world = WorldTokenizer.ForSyntheticWorld();
        string dir = TestPaths.NewTempDir();
        world.Write(dir);
        var tokenizer = ClipTokenizer.FromFiles(Path.Combine(dir, "vocab.json"), Path.Combine(dir, "merges.txt"));
        var ids = tokenizer.EncodeWithoutSpecials("A Zebra, 42 ünïcode ☃ words!");
        Assert.NotEmpty(ids);
        Assert.All(ids, id => Assert.InRange(id, 0, world.VocabularySize - 3));
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(dir, "vocab.json")))!;
        var mixed = tokenizer.EncodeWithoutSpecials("red zebra");
        Assert.Equal(vocab["red</w>"], mixed[0]);
        Assert.True(mixed.Count > 2, "an unknown word falls back to smaller pieces");
    }

    [Fact]
    public void WorldTokenizer_RejectsNonWords() =>
        Assert.Throws<ArgumentException>(() => WorldTokenizer.Build(["red", "Blue"]));

    [Fact]
    public void Configs_ParseWithCoreRecords()
    {
        var world = WorldTokenizer.ForSyntheticWorld();
        foreach (var config in new[] { new BaseModelConfig(), BaseModelConfig.Tiny })
        {
            config.Check(world);
            var unet = UNetConfig.Parse(config.UNetJson());
            Assert.Equal(config.TextHidden, unet.CrossAttentionDim);
            Assert.Equal(world.VocabularySize, ClipTextConfig.Parse(config.TextEncoderJson(world)).VocabSize);
            Assert.Equal(config.ImageSize / config.LatentSize, VaeConfig.Parse(config.VaeJson()).DownscaleFactor);
        }
        Assert.Equal(16, new BaseModelConfig().LatentSize);
        Assert.Throws<InvalidDataException>(() => BaseModelConfig.FromJson("""{"no_such_key": 1}""", "sizes.json"));
        Assert.Equal(new[] { 8, 8 }, BaseModelConfig.FromJson("""{"unet_channels": [8, 8]}""", "sizes.json").UNetChannels);
        Assert.Equal(new BaseModelConfig().UNetJson(), BaseModelConfig.FromJson(new BaseModelConfig().ToJson(), "sizes.json").UNetJson());
    }
}

/// <summary>Short VAE and base runs on a tiny world (32 px, tiny sizes).</summary>
public sealed class BaseModelTrainingTests
{
    /// <summary>The tiny world's dataset (32 px, 24 images, eval prompts), shared with <see cref="BaseModelSD3TrainingTests"/>.</summary>
    internal static readonly Lazy<string> Dataset = new(() =>
    {
        string dir = TestPaths.NewTempDir();
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 3, TrainCount = 24, ImageSize = 32 });
        DatasetWriter.WriteDataset(world, dir);
        DatasetWriter.WriteEvalPrompts(world, Path.Combine(dir, "eval_prompts.json"));
        return dir;
    });

    [Fact]
    public void VaeTraining_ReducesReconstructionError()
    {
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        string output = TestPaths.NewTempDir();
        var result = VaeTrainer.Train(BaseModelConfig.Tiny, data, new VaeTrainingOptions { Steps = 25, BatchSize = 4, LearningRate = 2e-3, WarmupSteps = 5, EvalImages = 4, Seed = 2 }, output);
        Assert.True(result.FinalL1 < 0.7 * result.InitialL1, $"L1 {result.InitialL1} -> {result.FinalL1}");
        Assert.True(result.Losses.Take(5).Average() > result.Losses.TakeLast(5).Average());

        var files = BaseDiffusionTrainer.ResolveVae(output);
        using var vae = PretrainedModels.LoadVae(files);
        Assert.Equal(result.ScalingFactor, vae.ScalingFactor);
        using var scope = NewDisposeScope();
        var (pixels, _) = (tensor(data.LoadImage(0)!, new long[] { 1, 3, 32, 32 }), 0);
        var (mean, _) = vae.Encode(pixels);
        Assert.Equal(new long[] { 1, 4, 16, 16 }, mean.shape);
        var decoded = vae.Decode(mean);
        Assert.Equal(new long[] { 1, 3, 32, 32 }, decoded.shape);
        Assert.InRange(decoded.min().item<float>(), -2f, 1f);
        Assert.InRange(decoded.max().item<float>(), -1f, 2f);
    }

    [Fact]
    public void BaseTraining_WritesAFolderThatLoadsStrictlyAndFineTunes()
    {
        string vaeDir = TestPaths.NewTempDir();
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        VaeTrainer.Train(BaseModelConfig.Tiny, data, new VaeTrainingOptions { Steps = 2, BatchSize = 2, EvalImages = 2 }, vaeDir);

        string model = Path.Combine(TestPaths.NewTempDir(), "base");
        var output = new StringWriter();
        var error = new StringWriter();
        var cli = new TrainerCli(DiffusersTrainableModel.Load, output, error);
        int code = cli.Run(["base", "unet", "--data", Dataset.Value, "--vae", vaeDir, "--out", model, "--steps", "6", "--batch-size", "4",
            "--warmup", "2", "--sizes", "tiny", "--seed", "5"]);
        Assert.True(code == 0, error.ToString());

        var layout = ModelFolder.Open(model);
        Assert.True(File.Exists(Path.Combine(model, "BASE_RECIPE.md")));
        using (var recipe = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "BASE_RECIPE.json"))))
        {
            Assert.Equal(6, recipe.RootElement.GetProperty("steps").GetInt32());
            Assert.Equal(5, recipe.RootElement.GetProperty("seed").GetInt64());
            Assert.Contains("base unet", recipe.RootElement.GetProperty("command").GetString());
            Assert.True(double.IsFinite(recipe.RootElement.GetProperty("final_loss").GetDouble()));
        }
        using (var loaded = DiffusersTrainableModel.Load(model))
        {
            Assert.Equal("v_prediction", loaded.PredictionType);
            var tokens = loaded.Tokenize("a red circle to the left of a blue square");
            Assert.Equal(10, tokens.Words.Count);
            Assert.All(tokens.Words, w => Assert.Single(w.TokenPositions));
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var context = loaded.EncodeText(tensor(tokens.InputIds, new long[] { 1, 77 })).Hidden;
            Assert.Equal(new long[] { 1, 77, 32 }, context.shape);
        }

        string probe = TestPaths.NewTempDir();
        code = cli.Run(["base", "sample", "--model", model, "--prompts", Path.Combine(Dataset.Value, "eval_prompts.json"), "--out", probe,
            "--per-category", "1", "--seeds", "1", "--sampling-steps", "2"]);
        Assert.True(code == 0, error.ToString());
        Assert.True(File.Exists(Path.Combine(probe, "probe.png")));
        using (var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(probe, "probe.json"))))
        {
            Assert.Equal(3, report.RootElement.GetProperty("Samples").GetArrayLength());
            Assert.InRange(report.RootElement.GetProperty("ColourAccuracy").GetDouble(), 0, 1);
        }

        string fineTune = TestPaths.NewTempDir();
        code = cli.Run(["train", "--model", model, "--data", Dataset.Value, "--out", fineTune, "--resolution", "32", "--steps", "2",
            "--batch-size", "2", "--lora-rank", "2", "--method", "ctcal", "--progress", "plain"]);
        Assert.True(code == 0, error.ToString());
        Assert.True(File.Exists(Path.Combine(fineTune, LoraFile.DefaultName)));
    }

    [Fact]
    public void BaseTraining_ResumesExactly()
    {
        string vaeDir = TestPaths.NewTempDir();
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        VaeTrainer.Train(BaseModelConfig.Tiny, data, new VaeTrainingOptions { Steps = 1, BatchSize = 2, EvalImages = 2 }, vaeDir);
        var options = new BaseTrainingOptions { Steps = 4, BatchSize = 2, WarmupSteps = 1, LrSchedule = LrScheduleKind.Constant, SaveEvery = 0, Seed = 9, LogEvery = 1 };
        string straight = TestPaths.NewTempDir(), split = TestPaths.NewTempDir();
        var full = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, vaeDir, options, straight);
        BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, vaeDir, options with { Steps = 2 }, split);
        Assert.NotNull(BaseDiffusionTrainer.LatestCheckpoint(split));
        var resumed = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, vaeDir, options with { Resume = "latest" }, split);

        Assert.Equal(4, resumed.Steps);
        Assert.Equal(2, resumed.ResumedAtStep);
        Assert.False(resumed.Cancelled);
        Assert.Equal(full.LossCurve.Select(c => c.Loss), resumed.LossCurve.Select(c => c.Loss), (a, b) => Math.Abs(a - b) < 1e-6);
        foreach (var file in new[] { "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors" })
        {
            var a = TensorFile.Load(Path.Combine(straight, file));
            var b = TensorFile.Load(Path.Combine(split, file));
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            foreach (var (name, tensor) in a) Assert.True(tensor.allclose(b[name], rtol: 0, atol: 1e-6), $"{file}: {name} differs after resume");
        }
    }

    [Fact]
    public void BaseTraining_StopAtThenResumeEqualsOneRunOfTheSameSchedule()
    {
        string vaeDir = TestPaths.NewTempDir();
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        VaeTrainer.Train(BaseModelConfig.Tiny, data, new VaeTrainingOptions { Steps = 1, BatchSize = 2, EvalImages = 2 }, vaeDir);
        var options = new BaseTrainingOptions { Steps = 4, BatchSize = 2, WarmupSteps = 1, LrSchedule = LrScheduleKind.Cosine, SaveEvery = 0, Seed = 5, LogEvery = 1 };
        string straight = TestPaths.NewTempDir(), split = TestPaths.NewTempDir();
        var full = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, vaeDir, options, straight);

        var first = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, vaeDir, options with { StopAt = 3 }, split);
        Assert.True(first.StoppedAtRequest);
        Assert.False(first.Cancelled);
        Assert.Equal(3, first.Steps);
        Assert.False(File.Exists(Path.Combine(split, "model_index.json")), "a stopped run must not write the model folder");
        Assert.EndsWith("step-0000003.safetensors", BaseDiffusionTrainer.LatestCheckpoint(split));

        var rest = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, vaeDir, options with { Resume = "latest" }, split);
        Assert.False(rest.StoppedAtRequest);
        Assert.Equal(3, rest.ResumedAtStep);
        var a = TensorFile.Load(Path.Combine(straight, "unet/diffusion_pytorch_model.safetensors"));
        var b = TensorFile.Load(Path.Combine(split, "unet/diffusion_pytorch_model.safetensors"));
        foreach (var (name, tensor) in a) Assert.True(tensor.allclose(b[name], rtol: 0, atol: 1e-6), $"{name} differs after --stop-at + resume");
        Assert.Equal(full.FinalLoss, rest.FinalLoss, 6);
    }

    [Fact]
    public void BaseTraining_StopAtOutsideTheScheduleIsRefused()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new BaseTrainingOptions { Steps = 4, StopAt = 5 }.Validate());
        Assert.Contains("stop-at", error.Message);
    }

    [Fact]
    public void BaseTraining_CancelledWritesOnlyACheckpoint()
    {
        string vaeDir = TestPaths.NewTempDir();
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        VaeTrainer.Train(BaseModelConfig.Tiny, data, new VaeTrainingOptions { Steps = 1, BatchSize = 2, EvalImages = 2 }, vaeDir);
        string output = TestPaths.NewTempDir();
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var result = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, vaeDir, new BaseTrainingOptions { Steps = 3, BatchSize = 2 }, output, null, cancel.Token);
        Assert.True(result.Cancelled);
        Assert.NotNull(BaseDiffusionTrainer.LatestCheckpoint(output));
        Assert.False(Directory.Exists(Path.Combine(output, "unet")));
    }

    [Fact]
    public void BaseTraining_RefusesAMismatchedVae()
    {
        string vaeDir = TestPaths.NewTempDir();
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        VaeTrainer.Train(BaseModelConfig.Tiny, data, new VaeTrainingOptions { Steps = 1, BatchSize = 2, EvalImages = 2 }, vaeDir);
        var other = BaseModelConfig.Tiny with { LatentChannels = 8 };
        var e = Assert.Throws<ArgumentException>(() => BaseDiffusionTrainer.Train(other, data, vaeDir, new BaseTrainingOptions { Steps = 1 }, TestPaths.NewTempDir()));
        Assert.Contains("latent_channels", e.Message);
    }
}

/// <summary>The SD3 family of the base (<c>base unet --family sd3</c>): tiny sizes on the tiny world.</summary>
public sealed class BaseModelSD3TrainingTests
{
    private static readonly Lazy<string> Dataset = BaseModelTrainingTests.Dataset;

    private static readonly Lazy<string> Vae = new(() =>
    {
        string dir = TestPaths.NewTempDir();
        VaeTrainer.Train(BaseModelConfig.Tiny, ImageCaptionDataset.Open(Dataset.Value, 32), new VaeTrainingOptions { Steps = 1, BatchSize = 2, EvalImages = 2 }, dir);
        return dir;
    });

    private static readonly BaseTrainingOptions Options = new()
    {
        Family = BaseFamily.SD3, MinSnrGamma = null, Steps = 4, BatchSize = 2, WarmupSteps = 1, LrSchedule = LrScheduleKind.Cosine,
        SaveEvery = 0, Seed = 9, LogEvery = 1,
    };

    [Fact]
    public void SD3Base_WritesAnSD3FolderThatLoadsAndProbes()
    {
        string model = Path.Combine(TestPaths.NewTempDir(), "base");
        var output = new StringWriter();
        var error = new StringWriter();
        var cli = new TrainerCli(TrainableModels.Load, output, error);
        int code = cli.Run(["base", "unet", "--family", "sd3", "--data", Dataset.Value, "--vae", Vae.Value, "--out", model, "--steps", "3",
            "--batch-size", "2", "--warmup", "1", "--sizes", "tiny", "--seed", "5"]);
        Assert.True(code == 0, error.ToString());

        var layout = ModelFolder.Open(model, ModelComponents.Sd3);
        Assert.True(layout.IsSD3);
        Assert.Null(layout.TextEncoder3OrNull);
        using (var recipe = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "BASE_RECIPE.json"))))
        {
            var root = recipe.RootElement;
            Assert.Equal("sd3", root.GetProperty("family").GetString());
            Assert.Equal("flow", root.GetProperty("prediction_type").GetString());
            Assert.Equal(JsonValueKind.Null, root.GetProperty("min_snr_gamma").ValueKind);
            Assert.Equal(BaseModelConfig.Tiny.FlowShift, root.GetProperty("flow_shift").GetDouble());
            Assert.Equal("logit_normal", root.GetProperty("weighting_scheme").GetString());
            Assert.True(root.GetProperty("transformer_parameters").GetInt64() > 0);
            Assert.False(root.TryGetProperty("unet_parameters", out _));
            Assert.Contains("--family sd3", root.GetProperty("command").GetString());
            Assert.Equal(3, root.GetProperty("steps").GetInt32());
            Assert.Equal(32, root.GetProperty("config").GetProperty("image_size").GetInt32());
        }
        using (var loaded = TrainableModels.Load(model))
        {
            var sd3 = Assert.IsType<SD3TrainableModel>(loaded);
            Assert.Equal("flow", sd3.PredictionType);
            Assert.Equal(BaseModelConfig.Tiny.FlowShift, sd3.Scheduler.Shift);
            Assert.Equal(BaseModelConfig.Tiny.TransformerLayers, sd3.CrossAttentionLayers.Count);
            var tokens = sd3.Tokenize("a red circle to the left of a blue square");
            Assert.Equal(10, tokens.Words.Count);
            Assert.All(tokens.Words, w => Assert.Single(w.TokenPositions));
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var context = sd3.EncodeText(tensor(tokens.InputIds, new long[] { 1, 154 }));
            Assert.Equal(new long[] { 1, 154, 2 * BaseModelConfig.Tiny.TextHidden }, context.Hidden.shape);
            Assert.Equal(new long[] { 1, 2 * BaseModelConfig.Tiny.TextHidden }, context.Pooled!.shape);
        }

        string probe = TestPaths.NewTempDir();
        code = cli.Run(["base", "sample", "--model", model, "--prompts", Path.Combine(Dataset.Value, "eval_prompts.json"), "--out", probe,
            "--per-category", "1", "--seeds", "1", "--sampling-steps", "2"]);
        Assert.True(code == 0, error.ToString());
        Assert.True(File.Exists(Path.Combine(probe, "probe.png")));
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(probe, "probe.json")));
        Assert.Equal(3, report.RootElement.GetProperty("Samples").GetArrayLength());
        Assert.InRange(report.RootElement.GetProperty("ColourAccuracy").GetDouble(), 0, 1);
    }

    [Fact]
    public void SD3Base_StopAtThenResumeEqualsOneRun()
    {
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        string straight = TestPaths.NewTempDir(), split = TestPaths.NewTempDir();
        var full = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, Vae.Value, Options, straight);
        Assert.Equal(BaseFamily.SD3, full.Family);
        Assert.All(full.LossCurve, c => Assert.True(double.IsFinite(c.Loss)));

        var first = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, Vae.Value, Options with { StopAt = 2 }, split);
        Assert.True(first.StoppedAtRequest);
        Assert.False(File.Exists(Path.Combine(split, "model_index.json")), "a stopped run must not write the model folder");
        var rest = BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, Vae.Value, Options with { Resume = "latest" }, split);
        Assert.Equal(2, rest.ResumedAtStep);
        Assert.Equal(full.LossCurve.Select(c => c.Loss).ToArray(), rest.LossCurve.Select(c => c.Loss).ToArray());
        foreach (var file in new[] { "transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "text_encoder_2/model.safetensors" })
        {
            var a = TensorFile.Load(Path.Combine(straight, file));
            var b = TensorFile.Load(Path.Combine(split, file));
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            foreach (var (name, tensor) in a) Assert.True(tensor.shape.SequenceEqual(b[name].shape) && tensor.eq(b[name]).all().item<bool>(), $"{file}: {name} differs after --stop-at + resume");
        }
    }

    [Fact]
    public void SD3Base_ResumingAnSD1CheckpointIsRefused()
    {
        var data = ImageCaptionDataset.Open(Dataset.Value, 32);
        string output = TestPaths.NewTempDir();
        BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, Vae.Value, new BaseTrainingOptions { Steps = 2, StopAt = 1, BatchSize = 2, Seed = 9, SaveEvery = 0 }, output);
        var e = Assert.Throws<InvalidDataException>(() => BaseDiffusionTrainer.Train(BaseModelConfig.Tiny, data, Vae.Value, Options with { Resume = "latest" }, output));
        Assert.Contains("step-0000001.safetensors", e.Message);
    }

    [Fact]
    public void SD3Base_DdpmOptionsAreRefusedBeforeAnythingIsWritten()
    {
        var e = Assert.Throws<ArgumentException>(() => (Options with { MinSnrGamma = 5 }).Validate());
        Assert.Contains("min-snr-gamma", e.Message);

        string model = Path.Combine(TestPaths.NewTempDir(), "base");
        var error = new StringWriter();
        var cli = new TrainerCli(TrainableModels.Load, new StringWriter(), error);
        foreach (var (args, expected) in new[]
        {
            (new[] { "--family", "sd3", "--min-snr-gamma", "5" }, "--min-snr-gamma"),
            (new[] { "--family", "sd4" }, "--family"),
            (new[] { "--weighting-scheme", "mode" }, "--weighting-scheme"),
        })
        {
            int code = cli.Run(["base", "unet", "--data", Dataset.Value, "--vae", Vae.Value, "--out", model, "--steps", "2", "--sizes", "tiny", .. args]);
            Assert.NotEqual(0, code);
            Assert.Contains(expected, error.ToString());
            Assert.False(Directory.Exists(model), $"{string.Join(" ", args)}: the output folder was touched");
        }
    }
}

using CTCal.Tests;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using SkiaSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

public sealed class TrainingRunTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-train");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Four 8x8 images with captions (one without a noun) in the metadata.jsonl layout.</summary>
    internal static string MakeDataset(string root, int size = 8)
    {
        string data = Path.Combine(root, "data");
        Directory.CreateDirectory(data);
        string[] captions = ["a red cube", "two green spheres", "a blue cone on top of a cube", "bright and colourful"];
        SKColor[] colours = [SKColors.Red, SKColors.Green, SKColors.Blue, SKColors.Orange];
        var lines = new List<string>();
        for (int i = 0; i < captions.Length; i++)
        {
            using var bitmap = new SKBitmap(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            for (int y = 0; y < size; y++)
                for (int x = 0; x < size; x++)
                    bitmap.SetPixel(x, y, (x + y + i) % 3 == 0 ? colours[i] : SKColors.White);
            using (var stream = File.Create(Path.Combine(data, $"{i}.png"))) bitmap.Encode(stream, SKEncodedImageFormat.Png, 100);
            lines.Add($$"""{"file_name": "{{i}}.png", "text": "{{captions[i]}}"}""");
        }
        File.WriteAllLines(Path.Combine(data, "metadata.jsonl"), lines);
        return data;
    }

    private static TrainingOptions Options(TrainingMethod method, int steps) => new()
    {
        Method = method,
        Steps = steps,
        BatchSize = 2,
        LearningRate = 1e-2,
        Lora = new LoraOptions { Rank = 2 },
        SaveEvery = 0,
        Layers = ["all"],
        Seed = 7,
    };

    private sealed class Recorder : ITrainingObserver
    {
        public readonly List<StepReport> Steps = [];
        public readonly List<string> Messages = [];
        public readonly List<string> Checkpoints = [];
        public TrainingStart? Start;
        public void Started(TrainingStart start) => Start = start;
        public void StepDone(StepReport report) => Steps.Add(report);
        public void CheckpointSaved(long step, string path) => Checkpoints.Add(path);
        public void ValidationSaved(long step, string path) { }
        public void Message(string level, string text) => Messages.Add($"{level}: {text}");
    }

    [Theory]
    [InlineData(TrainingMethod.Vanilla)]
    [InlineData(TrainingMethod.Ctcal)]
    public void BothMethodsTrainAndTheLossFalls(TrainingMethod method)
    {
        string data = MakeDataset(_dir);
        using var model = new ToyDiffusionModel();
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        var recorder = new Recorder();
        // The toy's attention-only LoRA has too little capacity to fit noise, so the falling-loss check trains the toy UNet
        // fully; LoRA training is covered by the resume test, the LoRA tests and the tiny-SD end-to-end test.
        using var run = new TrainingRun(model, dataset, Options(method, 20) with { FullFineTune = true }, Path.Combine(_dir, "out"), recorder);
        double before = run.EvaluationLoss();
        var result = run.Run();
        double after = run.EvaluationLoss();

        Assert.Equal(20, result.Steps);
        Assert.Equal(0, result.SkippedSteps);
        Assert.True(after < before * 0.9, $"{method}: evaluation loss {before} -> {after}");
        Assert.True(File.Exists(result.FinalWeights));
        Assert.True(File.Exists(result.LastCheckpoint));
        Assert.Equal(1, recorder.Start!.RecordsWithoutNouns);
        if (method == TrainingMethod.Ctcal)
        {
            Assert.Equal(["down.attn2", "mid.attn2"], run.CalibratedLayers);
            Assert.Contains(recorder.Steps, s => s.Nouns > 0 && s.Ctcal > 0 && s.Pixel >= 0);
            Assert.True(File.Exists(Path.Combine(_dir, "out", "attention_autoencoder.safetensors")));
            Assert.Contains(recorder.Messages, m => m.Contains("1 of 4 captions have no noun"));
        }
        else
        {
            Assert.All(recorder.Steps, s => Assert.Equal(0, s.Ctcal));
        }
    }

    [Fact]
    public void LoraRunWritesPeftStyleWeightsWithAlphaMetadata()
    {
        string data = MakeDataset(_dir);
        using var model = new ToyDiffusionModel();
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        using var run = new TrainingRun(model, dataset, Options(TrainingMethod.Ctcal, 2) with { Lora = new LoraOptions { Rank = 2, Alpha = 3, TextEncoder = true } },
            Path.Combine(_dir, "out"));
        var result = run.Run();
        Assert.Equal(Path.Combine(_dir, "out", LoraFile.DefaultName), result.FinalWeights);
        var (tensors, rank, alpha) = LoraFile.Load(result.FinalWeights!);
        Assert.Equal(2, rank);
        Assert.Equal(3.0, alpha);
        Assert.Contains("unet.down.attn2.to_q.lora_A.weight", tensors.Keys);
        Assert.Contains("unet.mid.attn2.to_out.0.lora_B.weight", tensors.Keys);
        Assert.Contains("text_encoder.q_proj.lora_A.weight", tensors.Keys);
        Assert.Equal(2 * (8 + 4), tensors.Count);
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    public void ResumedRunReproducesTheUninterruptedLosses()
    {
        string data = MakeDataset(_dir);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        var options = Options(TrainingMethod.Ctcal, 10) with
        {
            GradientAccumulation = 2,
            LrSchedule = LrScheduleKind.Cosine,
            WarmupSteps = 2,
            EmaDecay = 0.9,
            NoiseOffset = 0.05,
            MinSnrGamma = 5,
            Lora = new LoraOptions { Rank = 2, Dropout = 0.1, TextEncoder = true },
        };

        List<double> straight;
        using (var model = new ToyDiffusionModel())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "a")))
        {
            for (int i = 0; i < 10; i++) run.TrainStep();
            straight = run.Losses.ToList();
        }

        string checkpoint;
        using (var model = new ToyDiffusionModel())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            for (int i = 0; i < 5; i++) run.TrainStep();
            checkpoint = run.SaveCheckpoint();
            Assert.Equal(straight.Take(5), run.Losses);
        }
        Assert.Equal(checkpoint, TrainingRun.LatestCheckpoint(Path.Combine(_dir, "b")));

        using (var model = new ToyDiffusionModel())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            run.Resume(checkpoint);
            Assert.Equal(5, run.Step);
            for (int i = 0; i < 5; i++) run.TrainStep();
            var resumed = run.Losses;
            for (int i = 0; i < 5; i++) Assert.Equal(straight[5 + i], resumed[i], 1e-6);
        }
    }

    [Fact]
    public void ResumeRefusesAnIncompatibleCheckpoint()
    {
        string data = MakeDataset(_dir);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        string checkpoint;
        using (var model = new ToyDiffusionModel())
        using (var run = new TrainingRun(model, dataset, Options(TrainingMethod.Ctcal, 2), Path.Combine(_dir, "a")))
        {
            run.TrainStep();
            checkpoint = run.SaveCheckpoint();
        }
        using var other = new ToyDiffusionModel();
        using var vanilla = new TrainingRun(other, dataset, Options(TrainingMethod.Vanilla, 2), Path.Combine(_dir, "b"));
        var e = Assert.Throws<InvalidDataException>(() => vanilla.Resume(checkpoint));
        Assert.Contains("method", e.Message);
    }

    [Fact]
    public void NonFiniteStepsAreSkippedAndTooManyStopTheRun()
    {
        string data = MakeDataset(_dir);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        using var model = new ToyDiffusionModel();
        var recorder = new Recorder();
        using var run = new TrainingRun(model, dataset, Options(TrainingMethod.Ctcal, 20) with { SaveEvery = 2, MaxNonFiniteSteps = 3 },
            Path.Combine(_dir, "out"), recorder);
        run.TrainStep();
        run.TrainStep();
        string good = run.SaveCheckpoint();
        var weights = run.TrainableParameters.Select(p => p.Parameter.clone()).ToList();

        model.PoisonPredictions = true;
        Assert.True(run.TrainStep().Skipped);
        Assert.True(run.TrainStep().Skipped);
        var e = Assert.Throws<TrainingDivergedException>(() => run.TrainStep());
        Assert.Contains("3 steps in a row", e.Message);
        for (int i = 0; i < weights.Count; i++) Assert.True(weights[i].eq(run.TrainableParameters[i].Parameter).all().item<bool>());
        Assert.Equal(good, TrainingRun.LatestCheckpoint(Path.Combine(_dir, "out")));
        Assert.Equal(3, recorder.Messages.Count(m => m.Contains("non-finite")));
    }

    [Fact]
    public void RunFailsAsDivergedThroughRunToo()
    {
        string data = MakeDataset(_dir);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        using var model = new ToyDiffusionModel { PoisonPredictions = true };
        using var run = new TrainingRun(model, dataset, Options(TrainingMethod.Vanilla, 20) with { MaxNonFiniteSteps = 2 }, Path.Combine(_dir, "out"));
        Assert.Throws<TrainingDivergedException>(() => run.Run());
        Assert.Null(TrainingRun.LatestCheckpoint(Path.Combine(_dir, "out")));
    }

    [Fact]
    public void FullFineTuningTrainsEveryUNetParameterAndSavesTheUNet()
    {
        string data = MakeDataset(_dir);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        using var model = new ToyDiffusionModel(predictionType: "v_prediction");
        var before = model.UNet.parameters().Select(p => p.clone()).ToList();
        using var run = new TrainingRun(model, dataset, Options(TrainingMethod.Ctcal, 3) with { FullFineTune = true, LearningRate = 1e-3 }, Path.Combine(_dir, "out"));
        var result = run.Run();
        Assert.EndsWith(Path.Combine("unet", "diffusion_pytorch_model.safetensors"), result.FinalWeights);
        var after = model.UNet.parameters().ToList();
        Assert.All(Enumerable.Range(0, before.Count), i => Assert.False(before[i].eq(after[i]).all().item<bool>(), $"parameter {i} did not change"));
        var saved = TensorFile.Load(result.FinalWeights!);
        Assert.Equal(model.UNet.state_dict().Keys.Order(), saved.Keys.Order());
        foreach (var t in saved.Values) t.Dispose();
    }

    [Fact]
    public void LayerOptionResolvesAutoAllAndPaths()
    {
        AttentionLayerInfo[] layers = [new("down_blocks.0.a.attn2", 1), new("down_blocks.1.a.attn2", 2), new("mid_block.a.attn2", 8), new("up_blocks.1.a.attn2", 4)];
        Assert.Equal(["down_blocks.1.a.attn2", "up_blocks.1.a.attn2"], TrainingRun.ResolveLayers(layers, ["auto"]));
        Assert.Equal(4, TrainingRun.ResolveLayers(layers, ["all"]).Count);
        Assert.Equal(["mid_block.a.attn2"], TrainingRun.ResolveLayers(layers, ["mid_block.a.attn2.processor"]));
        Assert.Contains("nope", Assert.Throws<ArgumentException>(() => TrainingRun.ResolveLayers(layers, ["nope"])).Message);
        Assert.Equal(["x", "y"], TrainingRun.ResolveLayers([new("x", 1), new("y", 8)], ["auto"]));
    }

    [Fact]
    public void CustomAdamWMatchesTorchSharpAdamW()
    {
        var a = new TorchSharp.Modules.Parameter(randn(new long[] { 5, 3 }, generator: new TorchSharp.torch.Generator(3)));
        var b = new TorchSharp.Modules.Parameter(a.detach().clone());
        var mine = new AdamW([a], weightDecay: 0.05);
        var theirs = optim.AdamW([b], lr: 0.01, weight_decay: 0.05);
        var target = randn(new long[] { 5, 3 }, generator: new TorchSharp.torch.Generator(4));
        for (int i = 0; i < 6; i++)
        {
            mine.ZeroGrad();
            theirs.zero_grad();
            (a - target).square().sum().backward();
            (b - target).square().sum().backward();
            mine.Update(0.01);
            theirs.step();
        }
        Assert.True(allclose(a, b, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void CosineScheduleWarmsUpAndDecaysToZero()
    {
        var s = new LearningRateSchedule(LrScheduleKind.Cosine, 1.0, 2, 10);
        Assert.Equal(0.5, s.At(0), 9);
        Assert.Equal(1.0, s.At(1), 9);
        Assert.Equal(1.0, s.At(2), 9);
        Assert.Equal(0.5, s.At(6), 9);
        Assert.Equal(0.0, s.At(10), 9);
        Assert.Equal(1.0, new LearningRateSchedule(LrScheduleKind.Constant, 1.0, 0, 10).At(7), 9);
    }
}

using CTCal.Core.Probes;
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

    /// <summary>Four 8x8 images with captions (by default one without a noun) in the metadata.jsonl layout.</summary>
    internal static string MakeDataset(string root, int size = 8, string[]? captions = null)
    {
        string data = Path.Combine(root, "data");
        Directory.CreateDirectory(data);
        captions ??= ["a red cube", "two green spheres", "a blue cone on top of a cube", "bright and colourful"];
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

    /// <summary>
    /// <c>--layers premise:&lt;probe.json&gt;</c>: the layers whose teacher-t mass is above the large-t mass and at least twice
    /// chance; a probe with none is refused; a probed layer the model lacks is refused by name.
    /// </summary>
    [Fact]
    public void LayerOptionTakesTheLayersAPremiseProbeFoundWorthCalibrating()
    {
        AttentionLayerInfo[] layers = [new("down.attn2", 2), new("mid.attn2", 4), new("up.attn2", 2)];
        PremiseProbeRow Row(int t, string layer, double mass) => new(t, layer, 8, mass, 0.1, mass / 0.1, 5);
        var probe = new PremiseProbeResult([0, 900], 5, 5, 0,
        [
            Row(0, "down.attn2", 0.5), Row(900, "down.attn2", 0.15),  // holds, 5x chance: calibrated
            Row(0, "mid.attn2", 0.15), Row(900, "mid.attn2", 0.12),   // holds but only 1.5x chance: left out
            Row(0, "up.attn2", 0.3), Row(900, "up.attn2", 0.35),      // the noisy maps are better: left out
        ], [Row(0, PremiseProbeResult.AllLayers, 0.3), Row(900, PremiseProbeResult.AllLayers, 0.2)]);
        string dir = TestPaths.NewTempDir("ctcal-premise-layers");
        probe.Write(dir, "test");
        string file = Path.Combine(dir, PremiseProbeResult.JsonFileName);
        Assert.Equal(["down.attn2"], TrainingRun.ResolveLayers(layers, [TrainingRun.PremisePrefix + file]));

        Assert.Contains("'down.attn2' is not a cross-attention layer", Assert.Throws<ArgumentException>(() => TrainingRun.ResolveLayers([new("other.attn2", 2)], [TrainingRun.PremisePrefix + file])).Message);
        (probe with { PerLayer = [Row(0, "down.attn2", 0.1), Row(900, "down.attn2", 0.2)] }).Write(dir, "test");
        Assert.Contains("found no layer", Assert.Throws<ArgumentException>(() => TrainingRun.ResolveLayers(layers, [TrainingRun.PremisePrefix + file])).Message);
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>Copies of the gradients the optimizer was given in the last step (they stay on the parameters until the next).</summary>
    private static List<Tensor> Gradients(TrainingRun run) =>
        run.TrainableParameters.Select(p => p.Parameter.grad is { } g ? g.to_type(ScalarType.Float64).clone() : zeros_like(p.Parameter, dtype: ScalarType.Float64)).ToList();

    private static double GlobalNorm(IEnumerable<Tensor> gradients) => Math.Sqrt(gradients.Sum(g => g.square().sum().item<double>()));

    [Fact]
    public void MaxGradNormClipsTheUNetAndTheAutoencoderEachByItsOwnNormAndLeavesSmallerOnesUntouched()
    {
        string data = MakeDataset(_dir);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        (List<Tensor> Model, List<Tensor> Autoencoder, StepReport Report) OneStep(double maxGradNorm, string name)
        {
            using var model = new ToyDiffusionModel();
            using var run = new TrainingRun(model, dataset, Options(TrainingMethod.Ctcal, 1) with { MaxGradNorm = maxGradNorm }, Path.Combine(_dir, name));
            var report = run.TrainStep();
            Assert.False(report.Skipped);
            var gradients = Gradients(run);
            var isAutoencoder = run.TrainableParameters.Select(p => p.Name.StartsWith("attention_autoencoder.", StringComparison.Ordinal)).ToList();
            return (gradients.Where((_, i) => !isAutoencoder[i]).ToList(), gradients.Where((_, i) => isAutoencoder[i]).ToList(), report);
        }

        var (rawModel, rawAutoencoder, report) = OneStep(0, "off"); // 0: clipping off
        double modelNorm = GlobalNorm(rawModel), autoencoderNorm = GlobalNorm(rawAutoencoder);
        Assert.True(modelNorm > 1e-3 && autoencoderNorm > 1e-3, $"the test needs non-trivial gradients, got norms {modelNorm} and {autoencoderNorm}");
        Assert.Equal(modelNorm, report.GradNorm, modelNorm * 1e-5); // grad_norm: the UNet group before clipping
        Assert.Equal(autoencoderNorm, report.AutoencoderGradNorm!.Value, autoencoderNorm * 1e-5);

        // Each group larger than the maximum is scaled down to it by its own norm (the scale is max / (norm + 1e-6)),
        // direction kept; a group below it is untouched.
        void ExpectClipped(List<Tensor> raw, double norm, List<Tensor> clipped, double max, string what)
        {
            double factor = norm > max ? max / (norm + 1e-6) : 1;
            Assert.Equal(norm * factor, GlobalNorm(clipped), max * 1e-5);
            for (int i = 0; i < raw.Count; i++)
                Assert.True(allclose(clipped[i], raw[i] * factor, rtol: 1e-5, atol: 1e-12), $"{what} gradient {i} is not the unclipped one scaled by {factor}");
        }
        foreach (var (max, name) in new[] { (modelNorm / 4, "model"), (autoencoderNorm / 4, "autoencoder") })
        {
            var (model, autoencoder, clippedReport) = OneStep(max, name);
            Assert.Equal(modelNorm, clippedReport.GradNorm, modelNorm * 1e-5);
            ExpectClipped(rawModel, modelNorm, model, max, "UNet");
            ExpectClipped(rawAutoencoder, autoencoderNorm, autoencoder, max, "autoencoder");
        }

        // Smaller than the maximum: untouched.
        var (untouchedModel, untouchedAutoencoder, _) = OneStep(Math.Max(modelNorm, autoencoderNorm) * 4, "untouched");
        foreach (var (raw, untouched) in new[] { (rawModel, untouchedModel), (rawAutoencoder, untouchedAutoencoder) })
            for (int i = 0; i < raw.Count; i++)
                Assert.True(untouched[i].eq(raw[i]).all().item<bool>(), $"gradient {i} changed although its norm was below the maximum");
    }

    private sealed class SnapshotValidator(Func<Dictionary<string, Tensor>> snapshot) : ITrainingValidator
    {
        public readonly Dictionary<long, Dictionary<string, Tensor>> Seen = new();

        public string Validate(long step, string outputFolder)
        {
            Seen[step] = snapshot();
            return Path.Combine(outputFolder, $"step-{step}.png");
        }
    }

    /// <summary>Follows the live weights after every step and keeps the EMA the docs describe, computed here.</summary>
    private sealed class EmaFollower(IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable, double decay) : ITrainingObserver
    {
        private readonly Dictionary<string, Tensor> _average = trainable.ToDictionary(t => t.Name, t => t.Parameter.detach().to_type(ScalarType.Float64).clone());
        private int _updates;
        public readonly Dictionary<long, Dictionary<string, Tensor>> Average = new();
        public readonly Dictionary<long, Dictionary<string, Tensor>> Live = new();

        public void StepDone(StepReport report)
        {
            // shadow = d * shadow + (1 - d) * weights with d = min(decay, (1 + n) / (10 + n)), n = updates before this one.
            double d = Math.Min(decay, (1.0 + _updates) / (10.0 + _updates));
            _updates++;
            var live = trainable.ToDictionary(t => t.Name, t => t.Parameter.detach().to_type(ScalarType.Float64).clone());
            foreach (var (name, weights) in live) _average[name] = _average[name] * d + weights * (1 - d);
            Live[report.Step] = live;
            Average[report.Step] = _average.ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        }

        public void Started(TrainingStart start) { }
        public void CheckpointSaved(long step, string path) { }
        public void ValidationSaved(long step, string path) { }
        public void Message(string level, string text) { }
    }

    private static void AssertSameWeights(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual, string what)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, value) in expected)
            Assert.True(allclose(actual[name].to_type(ScalarType.Float64), value, rtol: 1e-5, atol: 1e-7), $"{what}: '{name}' is not the expected value");
    }

    private static void AssertDifferentWeights(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b, string what) =>
        Assert.True(a.Keys.Any(k => !allclose(a[k], b[k].to_type(ScalarType.Float64), rtol: 1e-5, atol: 1e-7)), $"{what}: the EMA equals the live weights, so the test shows nothing");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EmaWeightsAreUsedForValidationAndForTheFinalWeights(bool full)
    {
        string data = MakeDataset(_dir);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        using var model = new ToyDiffusionModel();
        var options = Options(TrainingMethod.Vanilla, 4) with
        {
            FullFineTune = full, EmaDecay = 0.2, ValidateEvery = 2, ValidationPrompts = ["a red cube"], LearningRate = 5e-2,
        };
        string output = Path.Combine(_dir, "out");
        EmaFollower? follower = null;
        // The observer has to exist before the run does; it forwards to the follower made from the run's parameters.
        using var run = new TrainingRun(model, dataset, options, output, new ForwardingObserver(() => follower));
        follower = new EmaFollower(run.TrainableParameters, decay: 0.2);
        var validator = new SnapshotValidator(() => run.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.detach().clone()));
        run.Validator = validator;
        var result = run.Run();

        Assert.Equal([2L, 4L], validator.Seen.Keys.Order());
        foreach (long step in new[] { 2L, 4L })
        {
            AssertSameWeights(follower.Average[step], validator.Seen[step], $"validation at step {step}");
            AssertDifferentWeights(follower.Average[step], follower.Live[step], $"step {step}");
        }

        // After validation and saving the live weights are back.
        AssertSameWeights(follower.Live[4], run.TrainableParameters.ToDictionary(t => t.Name, t => (Tensor)t.Parameter), "live weights after the run");

        var saved = full
            ? TensorFile.Load(result.FinalWeights!).ToDictionary(kv => "unet." + kv.Key, kv => kv.Value)
            : LoraFile.Load(result.FinalWeights!).Tensors.ToDictionary(kv => kv.Key, kv => kv.Value);
        AssertSameWeights(follower.Average[4], saved.Where(kv => follower.Average[4].ContainsKey(kv.Key)).ToDictionary(), "final weights");
        Assert.Equal(follower.Average[4].Count, saved.Keys.Count(follower.Average[4].ContainsKey));
        foreach (var t in saved.Values) t.Dispose();
    }

    private sealed class ForwardingObserver(Func<ITrainingObserver?> target) : ITrainingObserver
    {
        public void Started(TrainingStart start) => target()?.Started(start);
        public void StepDone(StepReport report) => target()?.StepDone(report);
        public void CheckpointSaved(long step, string path) => target()?.CheckpointSaved(step, path);
        public void ValidationSaved(long step, string path) => target()?.ValidationSaved(step, path);
        public void Message(string level, string text) => target()?.Message(level, text);
    }

    private static readonly string[] CaptionsWithNouns = ["a red cube", "two green spheres", "a blue cone on top of a cube", "an orange ball"];

    [Fact]
    public void StudentTimestepsAtOrBelowTheTeacherTimestepTrainWithTheDiffusionLossOnly()
    {
        // T = 1000 and t_stu ~ U[0, T): with t_tea = 999 no sample can be calibrated, so CTCal must train exactly as vanilla.
        string data = MakeDataset(_dir, captions: CaptionsWithNouns);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        List<StepReport> Train(TrainingMethod method, string name, out List<(long[] Timesteps, bool Captured, bool Grad)> calls,
            out List<Tensor>? autoencoderBefore, out List<Tensor>? autoencoderAfter)
        {
            using var model = new ToyDiffusionModel();
            using var run = new TrainingRun(model, dataset, Options(method, 4) with { TeacherTimestep = 999 }, Path.Combine(_dir, name));
            autoencoderBefore = run.Autoencoder?.parameters().Select(p => p.detach().clone()).ToList();
            var reports = Enumerable.Range(0, 4).Select(_ => run.TrainStep()).ToList();
            autoencoderAfter = run.Autoencoder?.parameters().Select(p => p.detach().clone()).ToList();
            calls = model.Calls;
            return reports;
        }

        var vanilla = Train(TrainingMethod.Vanilla, "vanilla", out _, out _, out _);
        var ctcal = Train(TrainingMethod.Ctcal, "ctcal", out var calls, out var before, out var after);

        Assert.Equal(vanilla.Select(r => r.Loss), ctcal.Select(r => r.Loss));
        Assert.All(ctcal, r => Assert.Equal((0.0, 0, 2), (r.Ctcal, r.Nouns, r.DiffusionOnlySamples)));
        Assert.All(calls, c => Assert.True(c.Grad && !c.Captured, "a teacher pass ran or maps were captured"));
        Assert.Equal(4, calls.Count);
        for (int i = 0; i < before!.Count; i++) Assert.True(before[i].eq(after![i]).all().item<bool>(), "the attention autoencoder was trained");
    }

    [Fact]
    public void OnlySamplesWithTheStudentTimestepAboveTheTeacherTimestepAreCalibrated()
    {
        string data = MakeDataset(_dir, captions: CaptionsWithNouns);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        using var model = new ToyDiffusionModel();
        const int teacherT = 500;
        using var run = new TrainingRun(model, dataset, Options(TrainingMethod.Ctcal, 12) with { BatchSize = 4, TeacherTimestep = teacherT }, Path.Combine(_dir, "out"));
        int mixed = 0, none = 0, all = 0;
        for (int step = 0; step < 12; step++)
        {
            model.Calls.Clear();
            var report = run.TrainStep();
            var student = Assert.Single(model.Calls, c => c.Grad);
            var teacher = model.Calls.Where(c => !c.Grad).ToList();
            int above = student.Timesteps.Count(t => t > teacherT);

            // Every caption has a noun, so exactly the samples with t_stu <= t_tea are trained with the diffusion loss only.
            Assert.Equal(4 - above, report.DiffusionOnlySamples);
            if (above == 0)
            {
                none++;
                Assert.Empty(teacher);
                Assert.False(student.Captured);
                Assert.Equal(0.0, report.Ctcal);
            }
            else
            {
                if (above == 4) all++;
                else mixed++;
                // The teacher pass sees only the calibrated samples, all at t_tea.
                var pass = Assert.Single(teacher);
                Assert.True(pass.Captured);
                Assert.Equal(Enumerable.Repeat((long)teacherT, above), pass.Timesteps);
                Assert.True(report.Ctcal > 0);
            }
        }
        Assert.True(mixed > 0 && none + all > 0, $"the seed did not give both kinds of batch (mixed {mixed}, none {none}, all {all})");
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

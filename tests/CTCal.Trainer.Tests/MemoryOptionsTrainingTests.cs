using CTCal.Tests;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>
/// The memory options change nothing a run computes: <c>--gradient-checkpointing</c> and <c>--cache-encodings</c> give the
/// same losses, study measures and trained weights as a run without them, on the tiny SD model.
/// </summary>
public sealed class MemoryOptionsTrainingTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-memory-options");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false, 1, false)] // cache at batch 1: bit for bit
    [InlineData(false, 2, false)] // cache at batch 2 (images meet other batch-mates in the second epoch)
    [InlineData(false, 1, true)]  // text-encoder LoRA: only the latents are cached
    [InlineData(true, 2, false)]  // checkpointing
    public void ARunIsTheSameWithTheMemoryOptions(bool checkpointing, int batch, bool textEncoder)
    {
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        var dataset = ImageCaptionDataset.Open(data, resolution: 16);
        var options = new TrainingOptions
        {
            Method = TrainingMethod.Ctcal, Steps = 5, BatchSize = batch, LearningRate = 1e-2, SaveEvery = 0, Layers = ["all"],
            AlignEvery = 2, Lora = new LoraOptions { Rank = 2, TextEncoder = textEncoder, Dropout = 0.1 },
        };
        var (baseLosses, baseReports, baseWeights) = Train(dataset, options, "plain", out _);
        var memory = checkpointing ? options with { GradientCheckpointing = true } : options with { CacheEncodings = true };
        var (losses, reports, weights) = Train(dataset, memory, "memory", out long cachedBytes);

        if (!checkpointing)
        {
            // 4 records: 4 posteriors of [2 x 4, 8, 8] floats (16 px, VAE factor 2); text embeddings [77, 32] per distinct caption unless the encoder trains.
            long expected = 4 * 8 * 8 * 8 * 4 + (textEncoder ? 0 : 4 * 77 * 32 * 4);
            Assert.Equal(expected, cachedBytes);
        }
        double tolerance = batch == 1 && !checkpointing ? 0 : 1e-6;
        for (int i = 0; i < losses.Count; i++)
            Assert.True(Math.Abs(losses[i] - baseLosses[i]) <= tolerance * Math.Max(1, Math.Abs(baseLosses[i])), $"step {i + 1}: loss {losses[i]} vs {baseLosses[i]}");
        for (int i = 0; i < reports.Count; i++)
        {
            Assert.Equal(baseReports[i].AlignKl.HasValue, reports[i].AlignKl.HasValue);
            if (baseReports[i].GradDiffusion is { } g)
                Assert.True(Math.Abs(reports[i].GradDiffusion!.Value - g) <= 1e-5 * Math.Max(1, g), $"step {i + 1}: grad_diffusion");
            if (baseReports[i].AlignKl is { } kl)
                Assert.True(Math.Abs(reports[i].AlignKl!.Value - kl) <= 1e-5 * Math.Max(1, kl), $"step {i + 1}: align_kl");
        }
        Assert.Equal(baseWeights.Keys, weights.Keys);
        foreach (var (key, value) in baseWeights)
        {
            double err = value.Zip(weights[key], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(err <= (tolerance == 0 ? 0 : 1e-5), $"{key}: max abs difference {err}");
        }
    }

    private (List<double> Losses, List<StepReport> Reports, Dictionary<string, float[]> Weights) Train(
        ImageCaptionDataset dataset, TrainingOptions options, string name, out long cachedBytes)
    {
        using var model = TinyStableDiffusion.Create(seed: 2);
        using var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, name));
        var reports = Enumerable.Range(0, options.Steps).Select(_ => run.TrainStep()).ToList();
        Assert.Equal(options.GradientCheckpointing, model.UNetModel.GradientCheckpointing);
        if (options.GradientCheckpointing) Assert.True(model.UNetModel.CheckpointRecomputations > 0);
        cachedBytes = run.CachedEncodingBytes;
        var weights = run.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.detach().cpu().data<float>().ToArray());
        return (reports.Select(r => r.Loss).ToList(), reports, weights);
    }
}

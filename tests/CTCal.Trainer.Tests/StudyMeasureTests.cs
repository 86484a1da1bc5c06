using System.Text.Json;
using CTCal.Tests;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>The study measures (--align-every): what they compute, when, and that they never change training.</summary>
public sealed class StudyMeasureTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-study");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void AlignmentIsZeroKlAndUnitCosineForEqualMapsAndIgnoresTheStudentsScale()
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(3);
        var teacher = rand(new long[] { 2, 2, 16, 5 }, generator: generator);
        var nouns = new NounTokens([[[1], [2, 3]], [[4]]]);
        var maps = new Dictionary<string, Tensor> { ["l"] = teacher };
        var same = AlignmentMeasure.Compute(maps, maps, nouns, ["l"], null);
        Assert.Equal(3, same.Nouns);
        Assert.Equal(0, same.KlSum, 9);
        Assert.Equal(3, same.CosineSum, 9);

        var scaled = AlignmentMeasure.Compute(maps, new Dictionary<string, Tensor> { ["l"] = teacher * 0.01 }, nouns, ["l"], null);
        Assert.Equal(0, scaled.KlSum, 6);
        Assert.Equal(3, scaled.CosineSum, 6);

        var shifted = teacher.reshape(2, 2, 4, 4, 5).roll(new long[] { 2 }, new long[] { 2 }).reshape(2, 2, 16, 5);
        var other = AlignmentMeasure.Compute(maps, new Dictionary<string, Tensor> { ["l"] = shifted }, nouns, ["l"], null);
        Assert.True(other.KlSum > 0.01, $"KL {other.KlSum}");
        Assert.True(other.CosineSum < 3 - 0.01, $"cosine {other.CosineSum}");
    }

    [Fact]
    public void EntropyIsOneForUniformStudentMapsAndZeroForASinglePixel()
    {
        using var scope = NewDisposeScope();
        var nouns = new NounTokens([[[1]]]);
        var teacher = new Dictionary<string, Tensor> { ["l"] = ones(1, 1, 16, 3) };
        var peak = zeros(1, 1, 16, 3);
        peak[0, 0, 5, 1] = tensor(1f);
        Assert.Equal(1, AlignmentMeasure.Compute(teacher, teacher, nouns, ["l"], null).EntropySum, 6);
        Assert.Equal(0, AlignmentMeasure.Compute(teacher, new Dictionary<string, Tensor> { ["l"] = peak }, nouns, ["l"], null).EntropySum, 6);
    }

    [Fact]
    public void StudyStepsAreStepOneAndEveryMultiple()
    {
        Assert.Equal([1, 3, 6, 9], Enumerable.Range(1, 10).Where(s => TrainingRun.IsStudyStep(s, 3)));
        Assert.DoesNotContain(Enumerable.Range(1, 10), s => TrainingRun.IsStudyStep(s, 0));
    }

    private static TrainingOptions Options(TrainingMethod method, int alignEvery) => new()
    {
        Method = method,
        Steps = 5,
        BatchSize = 3,
        GradientAccumulation = 2,
        LearningRate = 1e-2,
        Lora = new LoraOptions { Rank = 2, Dropout = 0.1, TextEncoder = true },
        SaveEvery = 0,
        Layers = ["all"],
        Seed = 11,
        AlignEvery = alignEvery,
    };

    private (List<StepReport> Reports, Dictionary<string, Tensor> Weights) Train(TrainingOptions options, string name)
    {
        var dataset = ImageCaptionDataset.Open(TrainingRunTests.MakeDataset(Path.Combine(_dir, name)), resolution: 8);
        using var model = new ToyDiffusionModel();
        using var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, name, "out"));
        var reports = Enumerable.Range(0, options.Steps).Select(_ => run.TrainStep()).ToList();
        return (reports, run.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.detach().clone()));
    }

    [Theory]
    [InlineData(TrainingMethod.Vanilla)]
    [InlineData(TrainingMethod.Ctcal)]
    public void MeasuringLeavesTheWeightsBitForBitUnchanged(TrainingMethod method)
    {
        var (off, offWeights) = Train(Options(method, 0), "off");
        var (on, onWeights) = Train(Options(method, 2), "on");
        Assert.All(off, r => Assert.Null(r.AlignKl));
        Assert.Equal([1L, 2L, 4L], on.Where(r => r.AlignNouns is not null).Select(r => r.Step));
        var measured = on.Where(r => r.AlignKl is not null).ToList();
        Assert.NotEmpty(measured);
        Assert.All(measured, r => Assert.True(r.AlignKl >= 0 && r.AlignCos is > 0 and <= 1 + 1e-9 && r.AlignNouns > 0, $"step {r.Step}: kl {r.AlignKl} cos {r.AlignCos}"));
        Assert.Equal(off.Select(r => r.Loss), on.Select(r => r.Loss));
        foreach (var (name, value) in offWeights)
            Assert.True(value.eq(onWeights[name]).all().item<bool>(), $"{method}: '{name}' changed when measuring");
    }

    [Fact]
    public void BothMethodsMeasureTheSameSamplesAndAgreeBeforeTheFirstUpdate()
    {
        // Step 1 sees the same batch, noise and timesteps and the same (untrained) weights under both methods.
        var vanilla = Train(Options(TrainingMethod.Vanilla, 5) with { Steps = 1 }, "vanilla").Reports[0];
        var ctcal = Train(Options(TrainingMethod.Ctcal, 5) with { Steps = 1 }, "ctcal").Reports[0];
        Assert.Equal(vanilla.AlignNouns, ctcal.AlignNouns);
        Assert.Equal(vanilla.AlignKl!.Value, ctcal.AlignKl!.Value, 5);
        Assert.Equal(vanilla.AlignCos!.Value, ctcal.AlignCos!.Value, 5);
    }

    [Fact]
    public void StepEventsCarryTheAlignmentOnMeasuredStepsOnly()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        using var output = new StringWriter();
        using var error = new StringWriter();
        var cli = new TrainerCli(_ => new ToyDiffusionModel(), output, error);
        int code = cli.Run(["train", "--model", "toy", "--data", data, "--out", Path.Combine(_dir, "out"), "--resolution", "8",
            "--batch-size", "3", "--lora-rank", "2", "--layers", "all", "--progress", "json", "--steps", "3", "--method", "vanilla", "--align-every", "2"]);
        Assert.True(code == 0, error.ToString());
        var steps = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.GetProperty("event").GetString() == "step").ToList();
        Assert.Equal([true, true, false], steps.Select(s => s.TryGetProperty("align_nouns", out _)));
        Assert.True(steps[0].TryGetProperty("align_kl", out var kl) && kl.GetDouble() >= 0);
        Assert.True(steps[0].TryGetProperty("align_cos", out _));
        Assert.True(steps[0].TryGetProperty("align_entropy", out var entropy) && entropy.GetDouble() is > 0 and <= 1);
        Assert.False(steps[2].TryGetProperty("align_kl", out _));
    }

    [Fact]
    public void VanillaDiffusionGradientNormIsTheStepsGradientNorm()
    {
        var (reports, _) = Train(Options(TrainingMethod.Vanilla, 1) with { Steps = 2, MaxGradNorm = 0 }, "vanilla");
        foreach (var r in reports)
        {
            Assert.True(r.GradDiffusion > 0, $"step {r.Step}: {r.GradDiffusion}");
            Assert.Equal(r.GradNorm, r.GradDiffusion!.Value, r.GradNorm * 1e-5);
            Assert.Null(r.GradCtcal);
            Assert.Null(r.GradReconstruction);
        }
    }

    [Fact]
    public void TheCtcalGradientScalesWithItsWeightsAndTheOthersDoNot()
    {
        StepReport FirstStep(double weight, string name)
        {
            var options = Options(TrainingMethod.Ctcal, 1) with
            {
                Steps = 1,
                Ctcal = new CtcalLossOptions { PixelWeight = weight, SemanticWeight = 0.5 * weight, BalanceWeight = 0.1 * weight, ReconstructionWeight = 0.5 },
            };
            return Train(options, name).Reports[0];
        }
        var one = FirstStep(1, "one");
        var two = FirstStep(2, "two");
        Assert.True(one.GradCtcal > 0 && one.GradReconstruction > 0, $"ctcal {one.GradCtcal}, reconstruction {one.GradReconstruction}");
        // The step's UNet gradient is grad_diffusion + grad_ctcal as vectors: its norm (grad_norm, before clipping) obeys the triangle inequality.
        Assert.InRange(one.GradNorm, Math.Abs(one.GradDiffusion!.Value - one.GradCtcal!.Value) * (1 - 1e-5), (one.GradDiffusion.Value + one.GradCtcal.Value) * (1 + 1e-5));
        Assert.Equal(2 * one.GradCtcal!.Value, two.GradCtcal!.Value, one.GradCtcal.Value * 1e-4);
        Assert.Equal(one.GradDiffusion!.Value, two.GradDiffusion!.Value, one.GradDiffusion.Value * 1e-6);
        Assert.Equal(one.GradReconstruction!.Value, two.GradReconstruction!.Value, one.GradReconstruction.Value * 1e-6);
    }
}

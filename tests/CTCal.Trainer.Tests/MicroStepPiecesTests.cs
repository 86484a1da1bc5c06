using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>The pure pieces of a micro-step: which samples CTCal covers, and how its term joins the diffusion loss.</summary>
public sealed class MicroStepPiecesTests
{
    [Fact]
    public void OnlySamplesWithNounsAndAStudentTimestepAboveTheTeacherAreCalibrated()
    {
        Assert.Equal([0, 3], TrainingRun.CalibratedSamples([2, 0, 1, 1], [900, 900, 400, 401], teacherTimestep: 400));
        Assert.Empty(TrainingRun.CalibratedSamples([1, 1], [0, 0], teacherTimestep: 0));
        Assert.Equal([0, 1], TrainingRun.CalibratedSamples([1, 3], [1, 999], teacherTimestep: 0));
        Assert.Throws<ArgumentException>(() => TrainingRun.CalibratedSamples([1], [1, 2], 0));
    }

    [Fact]
    public void TheCtcalTermIsScaledToABatchMeanWhereUncalibratedSamplesCountAsZero()
    {
        using var scope = NewDisposeScope();
        var diffusion = tensor(0.25f);
        var ctcal = tensor(0.8f); // the mean over the calibrated samples

        var (total, term) = TrainingRun.CombineLosses(diffusion, ctcal, calibrated: 1, batch: 4);
        Assert.Equal(0.2f, term!.item<float>(), 6);
        Assert.Equal(0.45f, total.item<float>(), 6);

        (total, term) = TrainingRun.CombineLosses(diffusion, ctcal, calibrated: 4, batch: 4);
        Assert.Equal(0.8f, term!.item<float>(), 6);
        Assert.Equal(1.05f, total.item<float>(), 6);

        (total, term) = TrainingRun.CombineLosses(diffusion, null, calibrated: 0, batch: 4);
        Assert.Null(term);
        Assert.Equal(0.25f, total.item<float>(), 6);
    }
}

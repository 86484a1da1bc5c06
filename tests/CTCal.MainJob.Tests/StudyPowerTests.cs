using CTCal.MainJob.Statistics;
using CTCal.Synthetic;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>Sample-size arithmetic: normal quantiles, standard errors, detectable differences, images needed.</summary>
public sealed class StudyPowerTests
{
    [Theory]
    [InlineData(0.975, 1.9599639845400536)]
    [InlineData(0.8, 0.8416212335729144)]
    [InlineData(0.5, 0.0)]
    [InlineData(0.3, -0.5244005127080407)]
    [InlineData(0.001, -3.090232306167813)]
    [InlineData(1e-10, -6.361340902404056)]
    [InlineData(0.999999, 4.753424308817089)]
    public void NormalQuantileMatchesReferenceValues(double p, double z) => Assert.Equal(z, StudyPower.NormalQuantile(p), 12);

    [Fact]
    public void StandardErrorsAndDetectableDifferencesFollowTheBinomialFormulas()
    {
        Assert.Equal(Math.Sqrt(0.25 / 400), StudyPower.StandardError(0.5, 400), 15);
        double se = StudyPower.StandardErrorOfDifference(0.5, 0.5, 400);
        Assert.Equal(Math.Sqrt(0.5 / 400), se, 15);
        // Half-width of the 95% interval (power 0.5) and the 80%-power detectable difference at 400 images per model.
        Assert.Equal(1.959963984540054 * se, StudyPower.MinimumDetectableDifference(se, power: 0.5), 12);
        Assert.Equal(0.09905, StudyPower.MinimumDetectableDifference(se), 5);
        Assert.Equal(2.5, StudyPower.DesignEffect(4, 0.5));
        Assert.Equal(se * Math.Sqrt(2.5), StudyPower.StandardErrorOfDifference(0.5, 0.5, 400, StudyPower.DesignEffect(4, 0.5)), 15);
    }

    [Fact]
    public void ImagesNeededForAFivePointDifference()
    {
        // A 95% interval of half-width 5 points around 50% -> 55%: ceil(1.96^2 (0.25 + 0.2475) / 0.05^2) = 765.
        Assert.Equal(765, StudyPower.ImagesPerModel(0.5, 0.55, power: 0.5));
        // Near 10-15% pass rates the same half-width takes about 400 images.
        Assert.InRange(StudyPower.ImagesPerModel(0.125, 0.175, power: 0.5), 380, 420);
        // 80% power roughly doubles it; a design effect multiplies it.
        int n80 = StudyPower.ImagesPerModel(0.5, 0.55);
        Assert.InRange(n80, 1550, 1570);
        Assert.InRange(StudyPower.ImagesPerModel(0.5, 0.55, designEffect: 2), 2 * n80 - 1, 2 * n80);
        Assert.Throws<ArgumentException>(() => StudyPower.ImagesPerModel(0.5, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => StudyPower.ImagesPerModel(1.5, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => StudyPower.MinimumDetectableDifference(0.01, power: 0.2));
    }

    [Fact]
    public void BootstrapStandardErrorAgreesWithTheFormulaForIndependentImages()
    {
        // One image per prompt, no prompt effect: the bootstrap's standard error is the binomial one.
        var rng = new SeededRandom(9);
        double[][] Draw(double p) => Enumerable.Range(0, 600).Select(_ => new[] { rng.NextDouble() < p ? 1.0 : 0.0 }).ToArray();
        var r = PairedBootstrap.Compare([Draw(0.3)], [Draw(0.35)], new PairedBootstrapOptions { Resamples = 4000 });
        double formula = StudyPower.StandardErrorOfDifference(r.MeanA, r.MeanB, 600);
        Assert.InRange(r.StandardError / formula, 0.9, 1.1);
    }

    [Fact]
    public void ResamplingSeedsAndPromptsTogetherIsConservativeByAboutTheSquareRootOfTwo()
    {
        // Three seed pairs x 300 prompts of pure noise (no seed, prompt or method effect): crossed resampling counts
        // the noise once per factor; holding the seeds fixed gives the binomial standard error.
        var rng = new SeededRandom(10);
        List<double[][]> Draw() => Enumerable.Range(0, 3).Select(_ => Enumerable.Range(0, 300).Select(_ => new[] { rng.NextDouble() < 0.5 ? 1.0 : 0.0 }).ToArray()).ToList();
        var (a, b) = (Draw(), Draw());
        var options = new PairedBootstrapOptions { Resamples = 4000 };
        var crossed = PairedBootstrap.Compare(a, b, options);
        var fixedSeeds = PairedBootstrap.Compare(a, b, options with { ResampleSeeds = false });
        double formula = StudyPower.StandardErrorOfDifference(0.5, 0.5, 900);
        Assert.True(crossed.ResampledSeeds);
        Assert.False(fixedSeeds.ResampledSeeds);
        Assert.InRange(fixedSeeds.StandardError / formula, 0.9, 1.1);
        Assert.InRange(crossed.StandardError / fixedSeeds.StandardError, 1.2, 1.65);
    }
}

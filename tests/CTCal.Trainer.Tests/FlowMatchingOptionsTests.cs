using CTCal.Trainer.Training;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary><see cref="FlowMatchingOptions"/>: diffusers' defaults, the scheme's split into sampling and weighting, and validation by option name.</summary>
public sealed class FlowMatchingOptionsTests
{
    [Fact]
    public void DefaultsAreTheSd3ScriptsAndSd3MediumsShift()
    {
        var o = new FlowMatchingOptions().Validate();
        Assert.Equal(("logit_normal", 0.0, 1.0, 1.29, 3.0), (o.WeightingScheme, o.LogitMean, o.LogitStd, o.ModeScale, o.Shift));
        Assert.Equal(("logit_normal", "none"), (o.TimestepSampling, o.LossWeighting));
    }

    [Theory]
    [InlineData("logit_normal", "logit_normal", "none")]
    [InlineData("mode", "mode", "none")]
    [InlineData("sigma_sqrt", "uniform", "sigma_sqrt")]
    [InlineData("cosmap", "uniform", "cosmap")]
    [InlineData("none", "uniform", "none")]
    public void OneSchemeChoosesSamplingAndWeightingAsTheScriptDoes(string scheme, string sampling, string weighting)
    {
        var o = new FlowMatchingOptions { WeightingScheme = scheme }.Validate();
        Assert.Equal((sampling, weighting), (o.TimestepSampling, o.LossWeighting));
    }

    public static TheoryData<FlowMatchingOptions, string> Invalid() => new()
    {
        { new FlowMatchingOptions { WeightingScheme = "uniform" }, nameof(FlowMatchingOptions.WeightingScheme) },
        { new FlowMatchingOptions { WeightingScheme = "Logit_Normal" }, nameof(FlowMatchingOptions.WeightingScheme) },
        { new FlowMatchingOptions { WeightingScheme = null! }, nameof(FlowMatchingOptions.WeightingScheme) },
        { new FlowMatchingOptions { LogitMean = double.NaN }, nameof(FlowMatchingOptions.LogitMean) },
        { new FlowMatchingOptions { LogitMean = double.PositiveInfinity }, nameof(FlowMatchingOptions.LogitMean) },
        { new FlowMatchingOptions { LogitStd = 0 }, nameof(FlowMatchingOptions.LogitStd) },
        { new FlowMatchingOptions { LogitStd = -1 }, nameof(FlowMatchingOptions.LogitStd) },
        { new FlowMatchingOptions { LogitStd = double.PositiveInfinity }, nameof(FlowMatchingOptions.LogitStd) },
        { new FlowMatchingOptions { ModeScale = -1.01 }, nameof(FlowMatchingOptions.ModeScale) },
        { new FlowMatchingOptions { ModeScale = 1.76 }, nameof(FlowMatchingOptions.ModeScale) },
        { new FlowMatchingOptions { ModeScale = double.NaN }, nameof(FlowMatchingOptions.ModeScale) },
        { new FlowMatchingOptions { Shift = 0 }, nameof(FlowMatchingOptions.Shift) },
        { new FlowMatchingOptions { Shift = -3 }, nameof(FlowMatchingOptions.Shift) },
        { new FlowMatchingOptions { Shift = double.NaN }, nameof(FlowMatchingOptions.Shift) },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void OutOfRangeValuesAreRefusedNamingTheOption(FlowMatchingOptions options, string option)
    {
        var e = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Equal(option, e.ParamName);
        Assert.Contains(option, e.Message);
        // The objective validates its options too.
        Assert.ThrowsAny<ArgumentException>(() => new FlowMatchingObjective(options));
    }

    [Fact]
    public void ModeScaleBoundsAreThePapersAndInclusive()
    {
        Assert.Equal(2 / (Math.PI - 2), FlowMatchingOptions.MaxModeScale, 12);
        new FlowMatchingOptions { ModeScale = FlowMatchingOptions.MaxModeScale }.Validate();
        new FlowMatchingOptions { ModeScale = FlowMatchingOptions.MinModeScale }.Validate();
        new FlowMatchingOptions { ModeScale = 0, LogitMean = -2.5, LogitStd = 0.01, Shift = 0.5 }.Validate();
    }
}

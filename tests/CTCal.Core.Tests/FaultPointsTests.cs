using CTCal.Core.Diagnostics;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>The parser of <c>CTCAL_FAULT_KILL</c> and <c>CTCAL_FAULT_PAUSE</c> (the kill itself is exercised by the trainer and exporter kill tests, the pause by the trainer's SIGTERM test).</summary>
public sealed class FaultPointsTests
{
    [Fact]
    public void Unset_or_blank_is_inert() => Assert.Null(FaultPoints.Spec.Parse(null) ?? FaultPoints.Spec.Parse("  "));

    [Theory]
    [InlineData("train.after-step", "train.after-step", 1)]
    [InlineData("train.after-step#3", "train.after-step", 3)]
    [InlineData("safetensors.before-rename:step-*#2", "safetensors.before-rename:step-*", 2)]
    public void Parses_pattern_and_hit(string value, string pattern, int hit)
    {
        var spec = FaultPoints.Spec.Parse(value)!;
        Assert.Equal(pattern, spec.Pattern);
        Assert.Equal(hit, spec.Hit);
    }

    [Theory]
    [InlineData("train.after-step#0")]
    [InlineData("train.after-step#-1")]
    [InlineData("train.after-step#x")]
    [InlineData("#2")]
    public void Malformed_values_are_refused_naming_the_variable(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => FaultPoints.Spec.Parse(value));
        Assert.Contains(FaultPoints.Variable, e.Message);
        Assert.Contains(value, e.Message);
    }

    [Fact]
    public void Malformed_pause_values_are_refused_naming_the_pause_variable()
    {
        var e = Assert.Throws<ArgumentException>(() => FaultPoints.Spec.Parse("train.mid-step#0", FaultPoints.PauseVariable));
        Assert.Contains(FaultPoints.PauseVariable, e.Message);
        Assert.DoesNotContain(FaultPoints.Variable, e.Message);
        Assert.Equal(new FaultPoints.Spec("train.mid-step", 2), FaultPoints.Spec.Parse("train.mid-step#2", FaultPoints.PauseVariable));
    }

    [Fact]
    public void Exact_names_match_only_themselves_and_a_star_matches_a_prefix()
    {
        var exact = new FaultPoints.Spec("train.after-step", 1);
        Assert.True(exact.Matches("train.after-step"));
        Assert.False(exact.Matches("train.after-step2"));
        Assert.False(exact.Matches("train.after"));
        var prefix = new FaultPoints.Spec("safetensors.before-rename:step-*", 1);
        Assert.True(prefix.Matches("safetensors.before-rename:step-0000003.safetensors"));
        Assert.False(prefix.Matches("safetensors.before-rename:pytorch_lora_weights.safetensors"));
    }

    [Fact]
    public void Not_armed_in_the_test_process() => Assert.False(FaultPoints.IsArmed);
}

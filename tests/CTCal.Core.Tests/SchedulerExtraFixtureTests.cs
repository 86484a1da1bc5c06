using CTCal.Core.Schedulers;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Core.Tests;

/// <summary>
/// Parity with diffusers 0.27.2 for the samplers that schedulers.* leaves out (tests/data/fixtures/schedulers_extra.*):
/// LMS, plain DPM++ 2M (no Karras sigmas) and Euler with v-prediction and linspace spacing.
/// </summary>
public sealed class SchedulerExtraFixtureTests(SchedulerExtraFixture fixture, ITestOutputHelper output) : IClassFixture<SchedulerExtraFixture>
{
    private static readonly string[] CaseNames =
        ["lms/20", "lms/30", "dpmpp2m/20", "dpmpp2m/30", "euler_v_linspace/20", "euler_v_linspace/30"];

    public static TheoryData<string> FixtureCases() => new(CaseNames);

    [Fact]
    public void Fixture_lists_exactly_the_cases_tested()
    {
        Assert.Equal(CaseNames.Order(), fixture.Cases.Order());
    }

    [Theory]
    [InlineData("scaled_linear", 0.00085, 0.012)]
    [InlineData("linear", 0.0001, 0.02)]
    public void Alphas_cumprod_match_diffusers(string schedule, double betaStart, double betaEnd)
    {
        var config = new SchedulerConfig { BetaSchedule = schedule, BetaStart = betaStart, BetaEnd = betaEnd };
        double[] ours = NoiseSchedule.AlphasCumprod(config);
        float[] reference = fixture.Tensors[$"alphas_cumprod_{schedule}"];
        Assert.Equal(reference.Length, ours.Length);
        for (int i = 0; i < ours.Length; i++) SchedulerParity.AssertRelative(reference[i], ours[i], 1e-6, $"alphas_cumprod[{i}]");
    }

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public void Timesteps_and_sigmas_match_diffusers(string name) =>
        SchedulerParity.AssertTimestepsAndSigmas(fixture.Json.RootElement.GetProperty(name), name);

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public void Deterministic_rollout_matches_diffusers(string name)
    {
        float[] expected = fixture.Tensors[name];
        double worst = SchedulerParity.RolloutError(fixture.Json.RootElement.GetProperty(name), name, fixture.Tensors["x0"], expected);
        output.WriteLine($"{name}: max error {worst:E2} (|x| up to {expected.Max(Math.Abs):F3})");
        Assert.True(worst <= 1e-5, $"{name}: max error {worst:E2}");
    }

    [Fact]
    public void The_recorded_rollouts_are_far_apart_compared_with_the_tolerance()
    {
        // Guards the 1e-5 tolerance: no two samplers (or step counts) end within it of each other, so a scheduler that
        // silently behaved like another one would fail the rollout test.
        foreach (string a in CaseNames)
        {
            foreach (string b in CaseNames.Where(b => string.CompareOrdinal(a, b) < 0))
            {
                double d = SchedulerToyModel.MaxAbsDiff(fixture.Tensors[a], fixture.Tensors[b]);
                Assert.True(d > 1e-3, $"{a} and {b} differ by only {d:E2}");
            }
        }
    }
}

using CTCal.Core.Schedulers;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Core.Tests;

/// <summary>Parity with diffusers 0.27.2 (tests/data/fixtures/schedulers.*).</summary>
public sealed class SchedulerFixtureTests(SchedulerFixture fixture, ITestOutputHelper output) : IClassFixture<SchedulerFixture>
{
    private static readonly string[] CaseNames =
        ["ddim/20", "ddim/30", "euler/20", "euler/30", "dpmpp2m_karras/20", "dpmpp2m_karras/30", "pndm/20", "pndm/30"];

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
        double worst = 0;
        for (int i = 0; i < ours.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - reference[i]) / reference[i]);
        output.WriteLine($"{schedule}: max relative error {worst:E2}");
        Assert.True(worst <= 1e-6, $"max relative error {worst:E2}");
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
}

using System.Globalization;
using System.Text.Json;
using CTCal.Core.Schedulers;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Core.Tests;

/// <summary>
/// Parity of <see cref="FlowMatchEulerDiscreteScheduler"/> with diffusers 0.29.2 (tests/data/fixtures/sd3/schedulers_flowmatch.*).
/// The fixture stores float32 timesteps and sigmas; they are compared to a relative 1e-6 (about 8 to 16 float32 ulps: an
/// absolute 1e-6 would be below float32's resolution for timesteps near 1000, whose ulp is 6.1e-5), and the rollouts to
/// 1e-5 relative to max(1, |expected|), as for the UNet samplers.
/// </summary>
public sealed class FlowMatchSchedulerFixtureTests(FlowMatchSchedulerFixture fixture, ITestOutputHelper output) : IClassFixture<FlowMatchSchedulerFixture>
{
    private static readonly string[] CaseNames = ["flowmatch_shift1/10", "flowmatch_shift1/28", "flowmatch_shift3/10", "flowmatch_shift3/28"];

    public static TheoryData<string> FixtureCases() => new(CaseNames);

    private JsonElement Case(string name) => fixture.Json.RootElement.GetProperty(name);

    /// <summary>The case's scheduler, created through the factory under diffusers' class name from the case's config, after set_timesteps.</summary>
    private static FlowMatchEulerDiscreteScheduler Create(JsonElement c, string name)
    {
        var config = SchedulerConfig.Parse(c.GetProperty("config").GetRawText(), name);
        var scheduler = Assert.IsType<FlowMatchEulerDiscreteScheduler>(SchedulerFactory.Create("FlowMatchEulerDiscreteScheduler", config));
        scheduler.SetTimesteps(int.Parse(name[(name.IndexOf('/') + 1)..], CultureInfo.InvariantCulture));
        return scheduler;
    }

    private static double MaxRelativeError(double[] expected, IReadOnlyList<double> actual)
    {
        Assert.Equal(expected.Length, actual.Count);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
            worst = Math.Max(worst, expected[i] == 0 ? Math.Abs(actual[i]) : Math.Abs(actual[i] - expected[i]) / Math.Abs(expected[i]));
        return worst;
    }

    [Fact]
    public void Fixture_lists_exactly_the_cases_tested()
    {
        Assert.Equal(CaseNames.Order(), fixture.Cases.Order());
        Assert.Equal([.. CaseNames, "x0"], fixture.Tensors.Keys.Order());
    }

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public void Timesteps_and_sigmas_match_diffusers(string name)
    {
        var c = Case(name);
        var scheduler = Create(c, name);
        double[] timesteps = SchedulerParity.Doubles(c.GetProperty("timesteps")), sigmas = SchedulerParity.Doubles(c.GetProperty("sigmas"));
        Assert.Equal(timesteps.Length + 1, sigmas.Length);
        Assert.Equal(0, sigmas[^1]);
        double tError = MaxRelativeError(timesteps, scheduler.Timesteps);
        double sError = MaxRelativeError(sigmas, scheduler.Sigmas.Select(s => (double)s).ToArray());
        double tAbs = timesteps.Zip(scheduler.Timesteps, (e, a) => Math.Abs(e - a)).Max();
        double sAbs = sigmas.Zip(scheduler.Sigmas, (e, a) => Math.Abs(e - a)).Max();
        output.WriteLine($"{name}: timesteps max relative error {tError:E2} (absolute {tAbs:E2}), sigmas {sError:E2} (absolute {sAbs:E2})");
        Assert.True(tError <= 1e-6, $"{name}: timesteps max relative error {tError:E2}");
        Assert.True(sError <= 1e-6, $"{name}: sigmas max relative error {sError:E2}");
        Assert.Equal(1f, scheduler.InitNoiseSigma);
    }

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public void Deterministic_rollout_matches_diffusers(string name)
    {
        // The fixture's rollout: x = x0; for each t: v = 0.5 * x + 0.1 * cos(t / 100); x = step(v, t, x).
        Assert.Equal("x = x0; for t: v = 0.5*x + 0.1*cos(t/100); x = step(v, t, x)", Case(name).GetProperty("rollout").GetString());
        var scheduler = Create(Case(name), name);
        float[] expected = fixture.Tensors[name];
        double worst = SchedulerParity.RolloutError(scheduler, fixture.Tensors["x0"], expected);
        output.WriteLine($"{name}: rollout max error {worst:E2} (|x| up to {expected.Max(Math.Abs):F3})");
        Assert.True(worst <= 1e-5, $"{name}: rollout max error {worst:E2}");
    }

    [Fact]
    public void The_recorded_rollouts_are_far_apart_compared_with_the_tolerance()
    {
        // Guards the 1e-5 tolerance: a wrong shift or step count would land more than 1e-3 away, not within it.
        foreach (string a in CaseNames)
        {
            foreach (string b in CaseNames.Where(b => string.CompareOrdinal(a, b) < 0))
            {
                double d = SchedulerToyModel.MaxAbsDiff(fixture.Tensors[a], fixture.Tensors[b]);
                Assert.True(d > 1e-3, $"{a} and {b} differ by only {d:E2}");
            }
            double fromStart = SchedulerToyModel.MaxAbsDiff(fixture.Tensors[a], fixture.Tensors["x0"]);
            Assert.True(fromStart > 1e-3, $"{a} is only {fromStart:E2} from x0");
        }
    }
}

using System.Text.Json;
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

    private static string SchedulerName(JsonElement c) => c.GetProperty("class").GetString() switch
    {
        "DDIMScheduler" => "ddim",
        "EulerDiscreteScheduler" => "euler",
        "PNDMScheduler" => "pndm",
        "DPMSolverMultistepScheduler" when c.GetProperty("config").TryGetProperty("use_karras_sigmas", out var k) && k.GetBoolean() => "dpmpp_2m_karras",
        "DPMSolverMultistepScheduler" => "dpmpp_2m",
        var other => throw new InvalidDataException($"fixture class {other} is not mapped"),
    };

    private static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();

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
    public void Timesteps_and_sigmas_match_diffusers(string name)
    {
        var c = fixture.Json.RootElement.GetProperty(name);
        var scheduler = SchedulerFactory.Create(SchedulerName(c), SchedulerConfig.Parse(c.GetProperty("config").GetRawText(), name));
        scheduler.SetTimesteps(c.GetProperty("num_inference_steps").GetInt32());

        Assert.Equal(Doubles(c.GetProperty("timesteps")), scheduler.Timesteps);
        AssertRelative(c.GetProperty("init_noise_sigma").GetDouble(), scheduler.InitNoiseSigma, 1e-6);
        if (c.TryGetProperty("sigmas", out var sigmasJson))
        {
            double[] expected = Doubles(sigmasJson);
            IReadOnlyList<float> ours = scheduler switch
            {
                EulerDiscreteScheduler e => e.Sigmas,
                DpmSolverMultistepScheduler d => d.Sigmas,
                _ => throw new InvalidOperationException($"{name} has sigmas but the scheduler exposes none"),
            };
            Assert.Equal(expected.Length, ours.Count);
            for (int i = 0; i < expected.Length; i++) AssertRelative(expected[i], ours[i], 1e-6, $"sigma[{i}]");
        }
    }

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public void Deterministic_rollout_matches_diffusers(string name)
    {
        var c = fixture.Json.RootElement.GetProperty(name);
        var scheduler = SchedulerFactory.Create(SchedulerName(c), SchedulerConfig.Parse(c.GetProperty("config").GetRawText(), name));
        scheduler.SetTimesteps(c.GetProperty("num_inference_steps").GetInt32());

        float[] x = fixture.Tensors["x0"].Select(v => v * scheduler.InitNoiseSigma).ToArray();
        var input = new float[x.Length];
        var eps = new float[x.Length];
        foreach (double t in scheduler.Timesteps)
        {
            // The fixture's toy model: eps = 0.5 * scale_model_input(x, t) + 0.1 * cos(t / 100).
            x.CopyTo(input, 0);
            scheduler.ScaleModelInput(input, t);
            double bias = 0.1 * Math.Cos(t / 100);
            for (int i = 0; i < x.Length; i++) eps[i] = (float)(0.5 * input[i] + bias);
            scheduler.Step(eps, t, x);
        }

        float[] expected = fixture.Tensors[name];
        double worst = 0;
        for (int i = 0; i < x.Length; i++) worst = Math.Max(worst, Math.Abs(x[i] - expected[i]) / Math.Max(1.0, Math.Abs(expected[i])));
        output.WriteLine($"{name}: max error {worst:E2} (|x| up to {expected.Max(Math.Abs):F3})");
        Assert.True(worst <= 1e-5, $"{name}: max error {worst:E2}");
    }

    private static void AssertRelative(double expected, double actual, double tolerance, string what = "value")
    {
        double error = expected == 0 ? Math.Abs(actual) : Math.Abs(actual - expected) / Math.Abs(expected);
        Assert.True(error <= tolerance, $"{what}: expected {expected:R}, got {actual:R} (relative error {error:E2})");
    }
}

using System.Text.Json;
using CTCal.Core.Schedulers;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// The checks shared by the scheduler fixture tests: a fixture case's scheduler built from its diffusers class and config,
/// its timesteps / sigmas / init_noise_sigma, and the fixture's deterministic rollout.
/// </summary>
internal static class SchedulerParity
{
    /// <summary>The short scheduler name for a fixture case's diffusers class (and Karras flag).</summary>
    public static string SchedulerName(JsonElement c) => c.GetProperty("class").GetString() switch
    {
        "DDIMScheduler" => "ddim",
        "EulerDiscreteScheduler" => "euler",
        "PNDMScheduler" => "pndm",
        "LMSDiscreteScheduler" => "lms",
        "DPMSolverMultistepScheduler" when c.GetProperty("config").TryGetProperty("use_karras_sigmas", out var k) && k.GetBoolean() => "dpmpp_2m_karras",
        "DPMSolverMultistepScheduler" => "dpmpp_2m",
        var other => throw new InvalidDataException($"fixture class {other} is not mapped"),
    };

    public static IDiffusionScheduler Create(JsonElement c, string name)
    {
        var scheduler = SchedulerFactory.Create(SchedulerName(c), SchedulerConfig.Parse(c.GetProperty("config").GetRawText(), name));
        scheduler.SetTimesteps(c.GetProperty("num_inference_steps").GetInt32());
        return scheduler;
    }

    public static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();

    /// <summary>Timesteps exactly, init_noise_sigma and (where recorded) sigmas to a relative 1e-6.</summary>
    public static void AssertTimestepsAndSigmas(JsonElement c, string name)
    {
        var scheduler = Create(c, name);
        Assert.Equal(Doubles(c.GetProperty("timesteps")), scheduler.Timesteps);
        AssertRelative(c.GetProperty("init_noise_sigma").GetDouble(), scheduler.InitNoiseSigma, 1e-6, "init_noise_sigma");
        if (c.TryGetProperty("sigmas", out var sigmasJson))
        {
            double[] expected = Doubles(sigmasJson);
            IReadOnlyList<float> ours = scheduler switch
            {
                EulerDiscreteScheduler e => e.Sigmas,
                LmsDiscreteScheduler l => l.Sigmas,
                DpmSolverMultistepScheduler d => d.Sigmas,
                _ => throw new InvalidOperationException($"{name} has sigmas but the scheduler exposes none"),
            };
            Assert.Equal(expected.Length, ours.Count);
            for (int i = 0; i < expected.Length; i++) AssertRelative(expected[i], ours[i], 1e-6, $"sigma[{i}]");
        }
    }

    /// <summary>
    /// The fixture's rollout: x = x0 * init_noise_sigma; for each t: out = 0.5 * scale_model_input(x, t) + 0.1 * cos(t / 100);
    /// x = step(out, t, x). The output is handed to the scheduler as whatever its prediction_type says. Returns the max error
    /// relative to max(1, |expected|).
    /// </summary>
    public static double RolloutError(JsonElement c, string name, float[] x0, float[] expected) => RolloutError(Create(c, name), x0, expected);

    /// <summary>
    /// The fixtures' deterministic rollout (x = x0 * init_noise_sigma; per timestep the toy model
    /// 0.5 * scale_model_input(x, t) + 0.1 * cos(t / 100) and one step) through <paramref name="scheduler"/>, after its
    /// set_timesteps: the largest error against <paramref name="expected"/>, relative to max(1, |expected|).
    /// </summary>
    public static double RolloutError(IDiffusionScheduler scheduler, float[] x0, float[] expected)
    {
        float[] x = x0.Select(v => v * scheduler.InitNoiseSigma).ToArray();
        var input = new float[x.Length];
        var modelOutput = new float[x.Length];
        foreach (double t in scheduler.Timesteps)
        {
            x.CopyTo(input, 0);
            scheduler.ScaleModelInput(input, t);
            double bias = 0.1 * Math.Cos(t / 100);
            for (int i = 0; i < x.Length; i++) modelOutput[i] = (float)(0.5 * input[i] + bias);
            scheduler.Step(modelOutput, t, x);
        }

        Assert.Equal(expected.Length, x.Length);
        double worst = 0;
        for (int i = 0; i < x.Length; i++) worst = Math.Max(worst, Math.Abs(x[i] - expected[i]) / Math.Max(1.0, Math.Abs(expected[i])));
        return worst;
    }

    public static void AssertRelative(double expected, double actual, double tolerance, string what = "value")
    {
        double error = expected == 0 ? Math.Abs(actual) : Math.Abs(actual - expected) / Math.Abs(expected);
        Assert.True(error <= tolerance, $"{what}: expected {expected:R}, got {actual:R} (relative error {error:E2})");
    }
}

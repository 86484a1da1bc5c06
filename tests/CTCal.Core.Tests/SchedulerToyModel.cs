using CTCal.Core.Schedulers;

namespace CTCal.Core.Tests;

/// <summary>
/// The fixture's toy model eps(x, t) = 0.5 x + 0.1 cos(t / 100) on the model input, expressed in every parameterisation,
/// and a rollout driver. alpha-bar of a step comes from alphas_cumprod (DDPM/DDIM/PNDM) or from the step's sigma
/// (alpha-bar = 1 / (sigma^2 + 1)) for the sigma-based samplers.
/// </summary>
internal static class SchedulerToyModel
{
    public static readonly SchedulerConfig Sd = new()
    {
        BetaSchedule = "scaled_linear", BetaStart = 0.00085, BetaEnd = 0.012, ClipSample = false, SetAlphaToOne = true,
        TimestepSpacing = "trailing",
    };

    public static float[] StartLatent(int n = 64, long seed = 7)
    {
        var x = new float[n];
        new GaussianNoise(seed).NextGaussian(x);
        return x;
    }

    /// <summary>alpha-bar that the scheduler uses at step <paramref name="index"/> (timestep <paramref name="t"/>).</summary>
    public static double AlphaBar(IDiffusionScheduler s, int index, double t) => s switch
    {
        EulerDiscreteScheduler e => 1 / (Math.Pow(e.Sigmas[index], 2) + 1),
        EulerAncestralScheduler e => 1 / (Math.Pow(e.Sigmas[index], 2) + 1),
        LmsDiscreteScheduler l => 1 / (Math.Pow(l.Sigmas[index], 2) + 1),
        DpmSolverMultistepScheduler d => 1 / (Math.Pow(d.Sigmas[index], 2) + 1),
        DdimScheduler d => d.AlphasCumprod[(int)t],
        DdpmScheduler d => d.AlphasCumprod[(int)t],
        PndmScheduler => NoiseSchedule.AlphasCumprod(s.Config)[(int)t],
        _ => throw new NotSupportedException(s.GetType().Name),
    };

    /// <summary>
    /// Runs all steps from the VP-space start <paramref name="xVp"/> (multiplied by sqrt(sigma_max^2 + 1) for sigma-based
    /// samplers, so every sampler starts from the same point of the ODE) and returns the final sample.
    /// </summary>
    public static float[] Rollout(IDiffusionScheduler s, int steps, float[] xVp, INoiseSource? noise = null, bool matchStart = true)
    {
        s.SetTimesteps(steps);
        double startScale = 1.0;
        if (matchStart && s is EulerDiscreteScheduler or EulerAncestralScheduler or LmsDiscreteScheduler)
            startScale = Math.Sqrt(1 / AlphaBar(s, 0, s.Timesteps[0]));
        float[] x = xVp.Select(v => (float)(v * startScale)).ToArray();
        var input = new float[x.Length];
        var output = new float[x.Length];
        string prediction = s.Config.PredictionType;
        for (int i = 0; i < s.Timesteps.Count; i++)
        {
            double t = s.Timesteps[i];
            x.CopyTo(input, 0);
            s.ScaleModelInput(input, t);
            double a = AlphaBar(s, i, t), sa = Math.Sqrt(a), sb = Math.Sqrt(1 - a);
            for (int k = 0; k < x.Length; k++)
            {
                double eps = 0.5 * input[k] + 0.1 * Math.Cos(t / 100);
                double x0 = (input[k] - sb * eps) / sa;
                output[k] = (float)(prediction switch
                {
                    "epsilon" => eps,
                    "v_prediction" => sa * eps - sb * x0,
                    _ => x0,
                });
            }
            s.Step(output, t, x, noise);
        }
        return x;
    }

    public static double MaxAbsDiff(float[] a, float[] b) => a.Zip(b, (p, q) => Math.Abs((double)p - q)).Max();
}

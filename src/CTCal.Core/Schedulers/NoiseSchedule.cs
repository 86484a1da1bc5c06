namespace CTCal.Core.Schedulers;

/// <summary>
/// The training noise schedule: betas and alphas_cumprod exactly as diffusers builds them in float32 (torch.linspace,
/// squaring and 1 - beta in float32; torch's CPU cumprod accumulates in double and rounds each entry to float32).
/// The arrays hold those float32 values widened to double.
/// </summary>
public static class NoiseSchedule
{
    public static double[] Betas(SchedulerConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        int n = c.NumTrainTimesteps;
        if (c.TrainedBetas is { } trained)
        {
            if (trained.Length != n)
                throw new ArgumentException($"{c.File}: trained_betas has {trained.Length} values but num_train_timesteps is {n}", nameof(c));
            return trained.Select(b => (double)(float)b).ToArray();
        }
        return c.BetaSchedule switch
        {
            "linear" => TorchLinspaceF32((float)c.BetaStart, (float)c.BetaEnd, n).Select(b => (double)b).ToArray(),
            // sqrt in double (Python floats), the linspace and the square in float32.
            "scaled_linear" => TorchLinspaceF32((float)Math.Sqrt(c.BetaStart), (float)Math.Sqrt(c.BetaEnd), n).Select(b => (double)(b * b)).ToArray(),
            "squaredcos_cap_v2" => CosineBetas(n),
            _ => throw new ArgumentException($"{c.File}: beta_schedule '{c.BetaSchedule}' is not supported", nameof(c)),
        };
    }

    /// <summary>alphas_cumprod[t] = prod_{s &lt;= t} (1 - beta_s) (DDPM, Ho et al. 2020, eq. 4: alpha-bar).</summary>
    public static double[] AlphasCumprod(SchedulerConfig c)
    {
        double[] betas = Betas(c);
        var result = new double[betas.Length];
        double product = 1.0;
        for (int i = 0; i < betas.Length; i++)
        {
            float alpha = 1f - (float)betas[i];
            product *= alpha;
            result[i] = (float)product;
        }
        return result;
    }

    /// <summary>torch.linspace for float32 on CPU: a float32 step, the first half counted from start, the second from end.</summary>
    internal static float[] TorchLinspaceF32(float start, float end, int steps)
    {
        var result = new float[steps];
        if (steps == 1) { result[0] = start; return result; }
        float step = (end - start) / (steps - 1);
        int halfway = steps / 2;
        for (int i = 0; i < steps; i++)
            result[i] = i < halfway ? start + step * i : end - step * (steps - i - 1);
        return result;
    }

    /// <summary>betas_for_alpha_bar with the cosine alpha-bar of Nichol and Dhariwal 2021 (eq. 17), capped at 0.999.</summary>
    private static double[] CosineBetas(int n)
    {
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var betas = new double[n];
        for (int i = 0; i < n; i++)
        {
            double t1 = (double)i / n, t2 = (double)(i + 1) / n;
            betas[i] = (float)Math.Min(1 - AlphaBar(t2) / AlphaBar(t1), 0.999);
        }
        return betas;
    }
}

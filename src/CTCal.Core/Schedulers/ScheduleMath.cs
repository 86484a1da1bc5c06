namespace CTCal.Core.Schedulers;

/// <summary>
/// The numpy steps of diffusers' <c>set_timesteps</c> (spacing, interpolation, Karras sigmas, sigma-to-t), written so
/// that they give diffusers' values bit for bit where that matters (float32 casts at the same places, round-half-even).
/// </summary>
internal static class ScheduleMath
{
    /// <summary>numpy.linspace(start, stop, num) in float64: i * step + start, with the last value exactly stop.</summary>
    public static double[] Linspace(double start, double stop, int num)
    {
        var y = new double[num];
        if (num == 1) { y[0] = start; return y; }
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) y[i] = i * step + start;
        y[^1] = stop;
        return y;
    }

    /// <summary>"leading": (arange(0, n) * (N // n)).round()[::-1] + steps_offset.</summary>
    public static double[] Leading(int trainSteps, int n, int stepsOffset)
    {
        int ratio = trainSteps / n;
        var t = new double[n];
        for (int i = 0; i < n; i++) t[i] = (double)(n - 1 - i) * ratio + stepsOffset;
        return t;
    }

    /// <summary>"linspace": linspace(0, N - 1, n).round()[::-1] (numpy rounds half to even, as Math.Round does).</summary>
    public static double[] LinspaceRounded(int trainSteps, int n) => Linspace(0, trainSteps - 1, n).Reversed().Select(v => Math.Round(v)).ToArray();

    /// <summary>"trailing": arange(N, 0, -N / n).round() - 1 (already descending).</summary>
    public static double[] Trailing(int trainSteps, int n)
    {
        double step = -(double)trainSteps / n;
        int count = (int)Math.Ceiling((0 - trainSteps) / step); // numpy.arange's length
        var t = new double[count];
        for (int i = 0; i < count; i++) t[i] = Math.Round(trainSteps + i * step) - 1;
        return t;
    }

    /// <summary>Integer timesteps as DDIM/DDPM/PNDM space them (descending), checked against the training range.</summary>
    public static int[] DiscreteTimesteps(SchedulerConfig config, int n, string defaultSpacing)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "the number of inference steps must be at least 1");
        if (n > config.NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(n), n, $"more inference steps than num_train_timesteps ({config.NumTrainTimesteps}) in {config.File}");
        double[] t = (config.TimestepSpacing ?? defaultSpacing) switch
        {
            "leading" => Leading(config.NumTrainTimesteps, n, config.StepsOffset),
            "linspace" => LinspaceRounded(config.NumTrainTimesteps, n),
            "trailing" => Trailing(config.NumTrainTimesteps, n),
            var s => throw new ArgumentException($"{config.File}: timestep_spacing '{s}' is not supported"),
        };
        return t.Select(v => (int)v).ToArray();
    }

    /// <summary>sigma_t = sqrt((1 - alpha-bar_t) / alpha-bar_t) for every training step, in float32 as torch computes it.</summary>
    public static float[] TrainingSigmas(double[] alphasCumprod)
    {
        var s = new float[alphasCumprod.Length];
        for (int i = 0; i < s.Length; i++)
        {
            float a = (float)alphasCumprod[i];
            s[i] = MathF.Sqrt((1f - a) / a);
        }
        return s;
    }

    /// <summary>numpy.interp(x, arange(len(fp)), fp) for x within [0, len - 1].</summary>
    public static double Interp(double x, float[] fp)
    {
        if (x <= 0) return fp[0];
        if (x >= fp.Length - 1) return fp[^1];
        int j = (int)Math.Floor(x);
        double slope = ((double)fp[j + 1] - fp[j]) / 1.0;
        return slope * (x - j) + fp[j];
    }

    /// <summary>Karras et al. 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, rho = 7.</summary>
    public static double[] KarrasSigmas(double sigmaMin, double sigmaMax, int n)
    {
        const double rho = 7.0;
        double[] ramp = Linspace(0, 1, n);
        double minInvRho = Math.Pow(sigmaMin, 1 / rho), maxInvRho = Math.Pow(sigmaMax, 1 / rho);
        return ramp.Select(r => Math.Pow(maxInvRho + r * (minInvRho - maxInvRho), rho)).ToArray();
    }

    /// <summary>log of the float32 training sigmas, as float32 (np.log on a float32 array).</summary>
    public static float[] LogSigmas(float[] trainingSigmas) => trainingSigmas.Select(s => (float)Math.Log(s)).ToArray();

    /// <summary>diffusers' _sigma_to_t: the fractional training step whose log-sigma interpolates to log(sigma).</summary>
    public static double SigmaToT(double sigma, float[] logSigmas)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        // Largest index whose log-sigma is <= log(sigma) (cumsum(dists >= 0).argmax()), clipped to len - 2.
        int low = 0;
        for (int i = 0; i < logSigmas.Length; i++) if (logSigma - logSigmas[i] >= 0) low = i;
        low = Math.Min(low, logSigmas.Length - 2);
        double lo = logSigmas[low], hi = logSigmas[low + 1];
        double w = Math.Clamp((lo - logSigma) / (lo - hi), 0, 1);
        return (1 - w) * low + w * (low + 1);
    }

    /// <summary>A reversed copy (numpy's [::-1]).</summary>
    public static T[] Reversed<T>(this T[] values)
    {
        var copy = (T[])values.Clone();
        Array.Reverse(copy);
        return copy;
    }

    public static void CheckSameLength(int expected, int actual, string name)
    {
        if (actual != expected) throw new ArgumentException($"{name} holds {actual} values but the sample holds {expected}", name);
    }

    /// <summary>Index of <paramref name="timestep"/> in the schedule; with duplicates the second one (diffusers' index_for_timestep).</summary>
    public static int IndexForTimestep(IReadOnlyList<double> timesteps, double timestep)
    {
        int first = -1;
        for (int i = 0; i < timesteps.Count; i++)
        {
            if (Math.Abs(timesteps[i] - timestep) > 1e-4 * Math.Max(1, Math.Abs(timestep))) continue;
            if (first >= 0) return i;
            first = i;
        }
        if (first < 0) throw new ArgumentException($"timestep {timestep} is not in the schedule set by SetTimesteps", nameof(timestep));
        return first;
    }

    /// <summary>An integer training timestep in [0, N), for schedulers that index alphas_cumprod directly.</summary>
    public static int TrainingIndex(double timestep, int trainSteps)
    {
        double r = Math.Round(timestep);
        if (Math.Abs(r - timestep) > 1e-6 || r < 0 || r >= trainSteps)
            throw new ArgumentOutOfRangeException(nameof(timestep), timestep, $"expected an integer training timestep in [0, {trainSteps})");
        return (int)r;
    }
}

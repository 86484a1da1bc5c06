namespace CTCal.Core.Schedulers;

/// <summary>
/// The sigma schedule shared by the Euler-family samplers (Euler, Euler ancestral, LMS): x = x0 + sigma eps with
/// sigma_t = sqrt((1 - alpha-bar_t) / alpha-bar_t); set_timesteps, the step counter, input scaling and add_noise as
/// diffusers' EulerDiscreteScheduler does them.
/// </summary>
internal sealed class SigmaSchedule
{
    private readonly SchedulerConfig _config;
    private readonly float[] _trainingSigmas;
    private readonly float[] _logSigmas;
    private readonly bool _karras;

    public SigmaSchedule(SchedulerConfig config, bool useKarrasSigmas)
    {
        _config = config;
        _karras = useKarrasSigmas;
        _trainingSigmas = ScheduleMath.TrainingSigmas(NoiseSchedule.AlphasCumprod(config));
        _logSigmas = ScheduleMath.LogSigmas(_trainingSigmas);
        // Before SetTimesteps diffusers holds the whole training table (descending, then 0).
        Sigmas = [.. _trainingSigmas.Reversed(), 0f];
        Timesteps = ScheduleMath.Linspace(0, config.NumTrainTimesteps - 1, config.NumTrainTimesteps).Reversed().Select(t => (double)(float)t).ToArray();
    }

    public string Spacing => _config.TimestepSpacing ?? "linspace";

    /// <summary>Timesteps (float32 values, fractional with Karras sigmas or linspace spacing).</summary>
    public double[] Timesteps { get; private set; }

    /// <summary>One sigma per timestep, then 0 (float32 values).</summary>
    public float[] Sigmas { get; private set; }

    /// <summary>The index of the next step; null until the first ScaleModelInput/Step locates it from the timestep.</summary>
    public int? StepIndex { get; set; }

    public float InitNoiseSigma
    {
        get
        {
            float max = Sigmas.Max();
            return Spacing is "linspace" or "trailing" ? max : MathF.Sqrt(max * max + 1);
        }
    }

    public void Set(int n)
    {
        int trainSteps = _config.NumTrainTimesteps;
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "the number of inference steps must be at least 1");
        if (n > trainSteps) throw new ArgumentOutOfRangeException(nameof(n), n, $"more inference steps than num_train_timesteps ({trainSteps}) in {_config.File}");
        float[] timesteps = Spacing switch
        {
            "linspace" => ScheduleMath.Linspace(0, trainSteps - 1, n).Reversed().Select(t => (float)t).ToArray(),
            "leading" => ScheduleMath.Leading(trainSteps, n, 0).Select(t => (float)t + _config.StepsOffset).ToArray(),
            "trailing" => ScheduleMath.Trailing(trainSteps, n).Select(t => (float)t).ToArray(),
            var s => throw new ArgumentException($"{_config.File}: timestep_spacing '{s}' is not supported"),
        };
        double[] sigmas = timesteps.Select(t => ScheduleMath.Interp(t, _trainingSigmas)).ToArray();
        double[] fractional = timesteps.Select(t => (double)t).ToArray();
        if (_karras)
        {
            sigmas = ScheduleMath.KarrasSigmas(sigmas[^1], sigmas[0], n);
            fractional = sigmas.Select(s => ScheduleMath.SigmaToT(s, _logSigmas)).ToArray();
        }
        Timesteps = fractional.Select(t => (double)(float)t).ToArray();
        Sigmas = [.. sigmas.Select(s => (float)s), 0f];
        StepIndex = null;
    }

    /// <summary>The current step's sigma, locating the step from <paramref name="timestep"/> on first use.</summary>
    public double CurrentSigma(double timestep)
    {
        StepIndex ??= ScheduleMath.IndexForTimestep(Timesteps, timestep);
        if (StepIndex >= Timesteps.Length) throw new InvalidOperationException($"all {Timesteps.Length} steps are done; call SetTimesteps to start again");
        return Sigmas[StepIndex.Value];
    }

    /// <summary>x / sqrt(sigma^2 + 1): the variance-exploding sample back to unit variance for the model.</summary>
    public void ScaleModelInput(Span<float> sample, double timestep)
    {
        double scale = 1 / Math.Sqrt(Math.Pow(CurrentSigma(timestep), 2) + 1);
        for (int i = 0; i < sample.Length; i++) sample[i] = (float)(sample[i] * scale);
    }

    /// <summary>x_sigma = x0 + sigma eps at a timestep of the schedule.</summary>
    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination)
    {
        ScheduleMath.CheckSameLength(original.Length, noise.Length, nameof(noise));
        ScheduleMath.CheckSameLength(original.Length, destination.Length, nameof(destination));
        double sigma = Sigmas[ScheduleMath.IndexForTimestep(Timesteps, timestep)];
        for (int i = 0; i < original.Length; i++) destination[i] = (float)(original[i] + noise[i] * sigma);
    }
}

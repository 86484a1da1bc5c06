// Follows diffusers.DPMSolverMultistepScheduler (0.27.2) with algorithm_type dpmsolver++: Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models".
namespace CTCal.Core.Schedulers;

/// <summary>
/// DPM-Solver++ (2M): multistep data-prediction solver in lambda = log(alpha_t / sigma_t), first order at the first
/// step (and the last, by default), second order in between. Optional Karras sigmas (the "DPM++ 2M Karras" sampler).
/// Keeps the previous x0 prediction per instance.
/// </summary>
public sealed class DpmSolverMultistepScheduler : IDiffusionScheduler
{
    private readonly float[] _trainingSigmas;
    private readonly float[] _logSigmas;
    private readonly Prediction.Kind _prediction;
    private readonly bool _karras;
    private double[] _timesteps = [];
    private float[] _sigmas = [];
    private readonly double[]?[] _modelOutputs;
    private int _lowerOrderNums;
    private int? _stepIndex;

    /// <param name="config">The scheduler configuration.</param>
    /// <param name="useKarrasSigmas">Overrides <see cref="SchedulerConfig.UseKarrasSigmas"/> when not null.</param>
    public DpmSolverMultistepScheduler(SchedulerConfig config, bool? useKarrasSigmas = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _karras = useKarrasSigmas ?? config.UseKarrasSigmas;
        _trainingSigmas = ScheduleMath.TrainingSigmas(NoiseSchedule.AlphasCumprod(config));
        _logSigmas = ScheduleMath.LogSigmas(_trainingSigmas);
        _prediction = Prediction.Parse(config);
        _modelOutputs = new double[config.SolverOrder][];
    }

    public SchedulerConfig Config { get; }

    public bool UsesKarrasSigmas => _karras;

    public IReadOnlyList<double> Timesteps => _timesteps;

    /// <summary>One sigma per timestep, then the final sigma (0 by default).</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    public float InitNoiseSigma => 1f;

    public void SetTimesteps(int numInferenceSteps)
    {
        int n = numInferenceSteps, trainSteps = Config.NumTrainTimesteps;
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), n, "the number of inference steps must be at least 1");
        if (n >= trainSteps) throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), n, $"must be below num_train_timesteps ({trainSteps}) in {Config.File}");
        // n + 1 points from the end of the schedule, the last (t = 0) dropped.
        double[] timesteps = (Config.TimestepSpacing ?? "linspace") switch
        {
            "linspace" => ScheduleMath.Linspace(0, trainSteps - 1, n + 1).Reversed().Take(n).Select(t => Math.Round(t)).ToArray(),
            // leading uses N // (n + 1) as its ratio here, unlike the other schedulers' N // n.
            "leading" => Enumerable.Range(0, n + 1).Reverse().Take(n).Select(i => (double)i * (trainSteps / (n + 1)) + Config.StepsOffset).ToArray(),
            "trailing" => ScheduleMath.Trailing(trainSteps, n),
            var s => throw new ArgumentException($"{Config.File}: timestep_spacing '{s}' is not supported"),
        };

        double[] sigmas;
        if (_karras)
        {
            sigmas = ScheduleMath.KarrasSigmas(_trainingSigmas[0], _trainingSigmas[^1], n);
            timesteps = sigmas.Select(s => Math.Round(ScheduleMath.SigmaToT(s, _logSigmas))).ToArray();
        }
        else
        {
            sigmas = timesteps.Select(t => ScheduleMath.Interp(t, _trainingSigmas)).ToArray();
        }
        double sigmaLast = Config.FinalSigmasType == "sigma_min" ? _trainingSigmas[0] : 0.0;
        _sigmas = [.. sigmas.Select(s => (float)s), (float)sigmaLast];
        _timesteps = timesteps;
        Array.Clear(_modelOutputs);
        _lowerOrderNums = 0;
        _stepIndex = null;
    }

    public void ScaleModelInput(Span<float> sample, double timestep) { }

    /// <summary>alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t (the VP pair of a VE sigma).</summary>
    private static (double Alpha, double Sigma) AlphaSigma(double sigma)
    {
        double alpha = 1 / Math.Sqrt(sigma * sigma + 1);
        return (alpha, sigma * alpha);
    }

    private int IndexForTimestep(double timestep)
    {
        int first = -1;
        for (int i = 0; i < _timesteps.Length; i++)
        {
            if (_timesteps[i] != Math.Round(timestep)) continue;
            if (first >= 0) return i;
            first = i;
        }
        return first >= 0 ? first : _timesteps.Length - 1;
    }

    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        if (_timesteps.Length == 0) throw new InvalidOperationException("call SetTimesteps before Step");
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        _stepIndex ??= IndexForTimestep(timestep);
        int s = _stepIndex.Value, total = _timesteps.Length;
        if (s >= total) throw new InvalidOperationException($"all {total} steps are done; call SetTimesteps to start again");

        bool lowerOrderFinal = s == total - 1 && (Config.EulerAtFinal || (Config.LowerOrderFinal && total < 15) || Config.FinalSigmasType == "zero");
        // (diffusers' lower_order_second only chooses between orders 2 and 3; this solver stops at order 2.)

        // 1. data prediction x0_theta(x_t, t) (DPM-Solver++ works with x0, eq. 9)
        var (alphaS0, sigmaS0) = AlphaSigma(_sigmas[s]);
        var x0 = new double[sample.Length];
        for (int i = 0; i < sample.Length; i++)
            x0[i] = Prediction.FromAlpha(_prediction, modelOutput[i], sample[i], alphaS0, sigmaS0).X0;
        for (int i = 0; i < _modelOutputs.Length - 1; i++) _modelOutputs[i] = _modelOutputs[i + 1];
        _modelOutputs[^1] = x0;

        // 2. first order (DPM-Solver++(1), the DDIM step) at the start and the end, else 2M (Algorithm 2)
        if (Config.SolverOrder == 1 || _lowerOrderNums < 1 || lowerOrderFinal) FirstOrderUpdate(x0, s, sample);
        else SecondOrderUpdate(s, sample);

        if (_lowerOrderNums < Config.SolverOrder) _lowerOrderNums++;
        _stepIndex++;
    }

    /// <summary>x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0, h = lambda_t - lambda_s (DPM-Solver++ eq. 10 with k = 1).</summary>
    private void FirstOrderUpdate(double[] x0, int s, Span<float> sample)
    {
        var (alphaT, sigmaT) = AlphaSigma(_sigmas[s + 1]);
        var (alphaS, sigmaS) = AlphaSigma(_sigmas[s]);
        double h = (Math.Log(alphaT) - Math.Log(sigmaT)) - (Math.Log(alphaS) - Math.Log(sigmaS));
        double ratio = sigmaT / sigmaS, coeff = alphaT * (Math.Exp(-h) - 1.0);
        for (int i = 0; i < sample.Length; i++) sample[i] = (float)(ratio * sample[i] - coeff * x0[i]);
    }

    /// <summary>
    /// DPM-Solver++(2M), Algorithm 2: D0 = x0_i, D1 = (x0_i - x0_{i-1}) / r0 with r0 = h_{i-1} / h_i; midpoint:
    /// x_t = (sigma_t / sigma_s0) x - alpha_t (e^{-h} - 1) D0 - 0.5 alpha_t (e^{-h} - 1) D1;
    /// heun: the D1 term is + alpha_t ((e^{-h} - 1) / h + 1) D1.
    /// </summary>
    private void SecondOrderUpdate(int s, Span<float> sample)
    {
        var (alphaT, sigmaT) = AlphaSigma(_sigmas[s + 1]);
        var (alphaS0, sigmaS0) = AlphaSigma(_sigmas[s]);
        var (alphaS1, sigmaS1) = AlphaSigma(_sigmas[s - 1]);
        double lambdaT = Math.Log(alphaT) - Math.Log(sigmaT);
        double lambdaS0 = Math.Log(alphaS0) - Math.Log(sigmaS0);
        double lambdaS1 = Math.Log(alphaS1) - Math.Log(sigmaS1);
        double h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1, r0 = h0 / h;
        double[] m0 = _modelOutputs[^1]!, m1 = _modelOutputs[^2]!;
        double ratio = sigmaT / sigmaS0, expm1 = Math.Exp(-h) - 1.0;
        bool midpoint = Config.SolverType == "midpoint";
        for (int i = 0; i < sample.Length; i++)
        {
            double d0 = m0[i], d1 = (1.0 / r0) * (m0[i] - m1[i]);
            double x = midpoint
                ? ratio * sample[i] - alphaT * expm1 * d0 - 0.5 * (alphaT * expm1) * d1
                : ratio * sample[i] - alphaT * expm1 * d0 + alphaT * (expm1 / h + 1.0) * d1;
            sample[i] = (float)x;
        }
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination)
    {
        ScheduleMath.CheckSameLength(original.Length, noise.Length, nameof(noise));
        ScheduleMath.CheckSameLength(original.Length, destination.Length, nameof(destination));
        if (_timesteps.Length == 0) throw new InvalidOperationException("call SetTimesteps before AddNoise");
        var (alpha, sigma) = AlphaSigma(_sigmas[ScheduleMath.IndexForTimestep(_timesteps, timestep)]);
        for (int i = 0; i < original.Length; i++) destination[i] = (float)(alpha * original[i] + sigma * noise[i]);
    }
}

// Follows diffusers.DDIMScheduler (0.27.2): Song, Meng and Ermon 2021, "Denoising Diffusion Implicit Models".
namespace CTCal.Core.Schedulers;

/// <summary>DDIM: deterministic (eta = 0) or partly stochastic (eta &gt; 0) steps over integer timesteps.</summary>
public sealed class DdimScheduler : IDiffusionScheduler
{
    private readonly double[] _alphasCumprod;
    private readonly double _finalAlphaCumprod;
    private readonly Prediction.Kind _prediction;
    private readonly bool _clipSample;
    private int _numInferenceSteps;

    public DdimScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _alphasCumprod = NoiseSchedule.AlphasCumprod(config);
        _finalAlphaCumprod = config.SetAlphaToOne ?? true ? 1.0 : _alphasCumprod[0];
        _prediction = Prediction.Parse(config);
        _clipSample = config.ClipSample ?? true;
    }

    public SchedulerConfig Config { get; }

    /// <summary>eta of DDIM eq. 16: 0 gives the deterministic sampler, 1 the DDPM-like posterior variance.</summary>
    public double Eta { get; set; }

    public IReadOnlyList<double> Timesteps { get; private set; } = [];

    public float InitNoiseSigma => 1f;

    public IReadOnlyList<double> AlphasCumprod => _alphasCumprod;

    public void SetTimesteps(int numInferenceSteps)
    {
        int[] timesteps = ScheduleMath.DiscreteTimesteps(Config, numInferenceSteps, defaultSpacing: "leading");
        _numInferenceSteps = numInferenceSteps;
        Timesteps = Array.AsReadOnly(timesteps.Select(t => (double)t).ToArray());
    }

    public void ScaleModelInput(Span<float> sample, double timestep) { }

    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        if (_numInferenceSteps == 0) throw new InvalidOperationException("call SetTimesteps before Step");
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        int t = ScheduleMath.TrainingIndex(timestep, Config.NumTrainTimesteps);

        // 1. previous timestep t - N/n
        int prev = t - Config.NumTrainTimesteps / _numInferenceSteps;
        // 2. alpha-bar_t and alpha-bar_{t-1} (eq. 12 writes them alpha_t, alpha_{t-1})
        double alphaProdT = _alphasCumprod[t];
        double alphaProdPrev = prev >= 0 ? _alphasCumprod[prev] : _finalAlphaCumprod;
        double betaProdT = 1 - alphaProdT;
        // 3. sigma_t(eta) of eq. 16: eta sqrt((1 - a_{t-1}) / (1 - a_t)) sqrt(1 - a_t / a_{t-1})
        double variance = (1 - alphaProdPrev) / betaProdT * (1 - alphaProdT / alphaProdPrev);
        double std = Eta * Math.Sqrt(variance);
        if (std > 0 && noise is null) throw new ArgumentNullException(nameof(noise), "DDIM with eta > 0 needs a noise source");
        float[]? z = null;
        if (std > 0)
        {
            z = new float[sample.Length];
            noise!.NextGaussian(z);
        }

        double sqrtA = Math.Sqrt(alphaProdT), sqrtB = Math.Sqrt(betaProdT);
        double sqrtAPrev = Math.Sqrt(alphaProdPrev), dirCoeff = Math.Sqrt(1 - alphaProdPrev - std * std);
        double range = Config.ClipSampleRange;
        for (int i = 0; i < sample.Length; i++)
        {
            // 4. predicted x0 ("predicted x_0" of eq. 12) and eps from the model output
            var (x0, eps) = Prediction.FromAlpha(_prediction, modelOutput[i], sample[i], sqrtA, sqrtB);
            // 5. optional clipping of x0
            if (_clipSample) x0 = Math.Clamp(x0, -range, range);
            // 6. eq. 12: x_{t-1} = sqrt(a_{t-1}) x0 + sqrt(1 - a_{t-1} - sigma_t^2) eps + sigma_t z
            double prevSample = sqrtAPrev * x0 + dirCoeff * eps;
            if (z is not null) prevSample += std * z[i];
            sample[i] = (float)prevSample;
        }
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination) =>
        VariancePreserving.AddNoise(_alphasCumprod, original, noise, timestep, destination);
}

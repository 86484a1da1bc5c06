// Follows diffusers.DDPMScheduler (0.27.2): Ho, Jain and Abbeel 2020, "Denoising Diffusion Probabilistic Models".
namespace CTCal.Core.Schedulers;

/// <summary>
/// DDPM ancestral sampling, and the forward process used in training (<see cref="AddNoise"/>, <see cref="GetVelocity"/>).
/// </summary>
public sealed class DdpmScheduler : IDiffusionScheduler
{
    private readonly double[] _alphasCumprod;
    private readonly Prediction.Kind _prediction;
    private readonly bool _clipSample;
    private int _numInferenceSteps;

    public DdpmScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _alphasCumprod = NoiseSchedule.AlphasCumprod(config);
        _prediction = Prediction.Parse(config);
        _clipSample = config.ClipSample ?? true;
    }

    public SchedulerConfig Config { get; }

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

    /// <summary>Previous timestep: t - N/n after <see cref="SetTimesteps"/>, t - 1 before (the full 1000-step chain).</summary>
    public int PreviousTimestep(int timestep) => timestep - Config.NumTrainTimesteps / (_numInferenceSteps > 0 ? _numInferenceSteps : Config.NumTrainTimesteps);

    /// <summary>Variance of the added noise at step t: fixed_small is beta-tilde_t of eq. 7, fixed_large is beta_t.</summary>
    public double Variance(int timestep)
    {
        int prev = PreviousTimestep(timestep);
        double alphaProdT = _alphasCumprod[timestep];
        double alphaProdPrev = prev >= 0 ? _alphasCumprod[prev] : 1.0;
        double currentBeta = 1 - alphaProdT / alphaProdPrev;
        return Config.VarianceType == "fixed_large" ? currentBeta : Math.Max((1 - alphaProdPrev) / (1 - alphaProdT) * currentBeta, 1e-20);
    }

    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        int t = ScheduleMath.TrainingIndex(timestep, Config.NumTrainTimesteps);
        int prev = PreviousTimestep(t);

        // 1. alphas and betas: alpha-bar_t, alpha-bar_{t-1}, and the step's own alpha_t = alpha-bar_t / alpha-bar_{t-1}
        double alphaProdT = _alphasCumprod[t];
        double alphaProdPrev = prev >= 0 ? _alphasCumprod[prev] : 1.0;
        double betaProdT = 1 - alphaProdT, betaProdPrev = 1 - alphaProdPrev;
        double currentAlpha = alphaProdT / alphaProdPrev, currentBeta = 1 - currentAlpha;

        // 2. posterior mean coefficients of eq. 7: mu = sqrt(a-bar_{t-1}) beta_t / (1 - a-bar_t) x0 + sqrt(alpha_t) (1 - a-bar_{t-1}) / (1 - a-bar_t) x_t
        double x0Coeff = Math.Sqrt(alphaProdPrev) * currentBeta / betaProdT;
        double sampleCoeff = Math.Sqrt(currentAlpha) * betaProdPrev / betaProdT;

        // 3. noise scale sqrt(variance), none at the last step
        float[]? z = null;
        double std = 0;
        if (t > 0)
        {
            if (noise is null) throw new ArgumentNullException(nameof(noise), "a DDPM step at t > 0 needs a noise source");
            std = Math.Sqrt(Variance(t));
            z = new float[sample.Length];
            noise.NextGaussian(z);
        }

        double sqrtA = Math.Sqrt(alphaProdT), sqrtB = Math.Sqrt(betaProdT), range = Config.ClipSampleRange;
        for (int i = 0; i < sample.Length; i++)
        {
            // 4. predicted x0 (eq. 15 for epsilon), optionally clipped
            var (x0, _) = Prediction.FromAlpha(_prediction, modelOutput[i], sample[i], sqrtA, sqrtB);
            if (_clipSample) x0 = Math.Clamp(x0, -range, range);
            // 5. x_{t-1} = mu + sigma_t z
            double prevSample = x0Coeff * x0 + sampleCoeff * sample[i];
            if (z is not null) prevSample += std * z[i];
            sample[i] = (float)prevSample;
        }
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination) =>
        VariancePreserving.AddNoise(_alphasCumprod, original, noise, timestep, destination);

    /// <summary>v-prediction target (Salimans and Ho 2022): v = sqrt(alpha-bar_t) eps - sqrt(1 - alpha-bar_t) x0.</summary>
    public void GetVelocity(ReadOnlySpan<float> sample, ReadOnlySpan<float> noise, int timestep, Span<float> destination)
    {
        ScheduleMath.CheckSameLength(sample.Length, noise.Length, nameof(noise));
        ScheduleMath.CheckSameLength(sample.Length, destination.Length, nameof(destination));
        int t = ScheduleMath.TrainingIndex(timestep, Config.NumTrainTimesteps);
        double a = Math.Sqrt(_alphasCumprod[t]), b = Math.Sqrt(1 - _alphasCumprod[t]);
        for (int i = 0; i < sample.Length; i++) destination[i] = (float)(a * noise[i] - b * sample[i]);
    }
}

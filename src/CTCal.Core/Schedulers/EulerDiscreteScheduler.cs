// Follows diffusers.EulerDiscreteScheduler (0.27.2): Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models", Algorithm 2 with churn 0.
namespace CTCal.Core.Schedulers;

/// <summary>Euler's method on the probability-flow ODE dx/dsigma = (x - x0(x, sigma)) / sigma.</summary>
public sealed class EulerDiscreteScheduler : IDiffusionScheduler
{
    private readonly SigmaSchedule _schedule;
    private readonly Prediction.Kind _prediction;

    public EulerDiscreteScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _schedule = new SigmaSchedule(config, config.UseKarrasSigmas);
        _prediction = Prediction.Parse(config);
    }

    public SchedulerConfig Config { get; }

    public IReadOnlyList<double> Timesteps => _schedule.Timesteps;

    /// <summary>One sigma per timestep, then 0.</summary>
    public IReadOnlyList<float> Sigmas => _schedule.Sigmas;

    public float InitNoiseSigma => _schedule.InitNoiseSigma;

    public void SetTimesteps(int numInferenceSteps) => _schedule.Set(numInferenceSteps);

    public void ScaleModelInput(Span<float> sample, double timestep) => _schedule.ScaleModelInput(sample, timestep);

    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        // 1. sigma_i and sigma_{i+1} (with churn gamma = 0, sigma-hat = sigma_i)
        double sigma = _schedule.CurrentSigma(timestep);
        double sigmaNext = _schedule.Sigmas[_schedule.StepIndex!.Value + 1];
        double dt = sigmaNext - sigma;
        for (int i = 0; i < sample.Length; i++)
        {
            // 2. denoised D(x; sigma) from the model output
            double x0 = Prediction.X0FromSigma(_prediction, modelOutput[i], sample[i], sigma);
            // 3. d = (x - D) / sigma (Algorithm 2, line 7), 4. x_{i+1} = x + (sigma_{i+1} - sigma) d (line 8)
            double derivative = (sample[i] - x0) / sigma;
            sample[i] = (float)(sample[i] + derivative * dt);
        }
        _schedule.StepIndex++;
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination) =>
        _schedule.AddNoise(original, noise, timestep, destination);
}

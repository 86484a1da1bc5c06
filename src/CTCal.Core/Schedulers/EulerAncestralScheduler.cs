// Follows diffusers.EulerAncestralDiscreteScheduler (0.27.2): the ancestral Euler sampler of k-diffusion (Karras et al. 2022 setting).
namespace CTCal.Core.Schedulers;

/// <summary>
/// Euler ancestral: an Euler step down to sigma_down, then fresh noise of scale sigma_up, where
/// sigma_up^2 + sigma_down^2 = sigma_next^2 and sigma_up = sigma_next sqrt((sigma^2 - sigma_next^2) / sigma^2).
/// </summary>
public sealed class EulerAncestralScheduler : IDiffusionScheduler
{
    private readonly SigmaSchedule _schedule;
    private readonly Prediction.Kind _prediction;

    public EulerAncestralScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        // diffusers' ancestral scheduler has no Karras option; the schedule is always the interpolated one.
        _schedule = new SigmaSchedule(config, useKarrasSigmas: false);
        _prediction = Prediction.Parse(config);
    }

    public SchedulerConfig Config { get; }

    public IReadOnlyList<double> Timesteps => _schedule.Timesteps;

    public IReadOnlyList<float> Sigmas => _schedule.Sigmas;

    public float InitNoiseSigma => _schedule.InitNoiseSigma;

    public void SetTimesteps(int numInferenceSteps) => _schedule.Set(numInferenceSteps);

    public void ScaleModelInput(Span<float> sample, double timestep) => _schedule.ScaleModelInput(sample, timestep);

    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        if (noise is null) throw new ArgumentNullException(nameof(noise), "Euler ancestral steps need a noise source");
        // 1. sigma_from, sigma_to and the split of sigma_to into a deterministic part (down) and fresh noise (up)
        double sigma = _schedule.CurrentSigma(timestep);
        double sigmaTo = _schedule.Sigmas[_schedule.StepIndex!.Value + 1];
        double sigmaUp = Math.Sqrt(sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo) / (sigma * sigma));
        double sigmaDown = Math.Sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
        double dt = sigmaDown - sigma;
        var z = new float[sample.Length];
        noise.NextGaussian(z);
        for (int i = 0; i < sample.Length; i++)
        {
            // 2. denoised x0, 3. d = (x - x0) / sigma, 4. Euler step to sigma_down, 5. add sigma_up z
            double x0 = Prediction.X0FromSigma(_prediction, modelOutput[i], sample[i], sigma);
            double derivative = (sample[i] - x0) / sigma;
            sample[i] = (float)(sample[i] + derivative * dt + z[i] * sigmaUp);
        }
        _schedule.StepIndex++;
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination) =>
        _schedule.AddNoise(original, noise, timestep, destination);
}

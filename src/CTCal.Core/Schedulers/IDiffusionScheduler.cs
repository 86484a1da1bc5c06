namespace CTCal.Core.Schedulers;

/// <summary>
/// A diffusion sampler on plain float buffers. A buffer holds a whole latent batch; the algorithms are elementwise.
/// Samplers with history (PNDM, LMS, DPM++ 2M) and the Euler family's step counter keep state per instance: use one
/// instance per generation and call <see cref="SetTimesteps"/> before each. Instances are not thread-safe.
/// </summary>
public interface IDiffusionScheduler
{
    SchedulerConfig Config { get; }

    /// <summary>The timesteps to visit, in order, after <see cref="SetTimesteps"/> (Euler-family timesteps are fractional).</summary>
    IReadOnlyList<double> Timesteps { get; }

    /// <summary>Scale of the initial noise: x_T = InitNoiseSigma * N(0, I).</summary>
    float InitNoiseSigma { get; }

    /// <summary>Chooses the timesteps for <paramref name="numInferenceSteps"/> steps and resets all history.</summary>
    void SetTimesteps(int numInferenceSteps);

    /// <summary>Scales the sample in place into the model's input (identity where the algorithm has none).</summary>
    void ScaleModelInput(Span<float> sample, double timestep);

    /// <summary>
    /// One reverse step in place: <paramref name="sample"/> x_t becomes x_{t-1}. <paramref name="noise"/> is required by
    /// stochastic steps (DDPM, Euler ancestral, DDIM with eta &gt; 0) and ignored by deterministic ones.
    /// </summary>
    void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null);

    /// <summary>Forward process: destination = x_t for clean <paramref name="original"/> and <paramref name="noise"/> at <paramref name="timestep"/>.</summary>
    void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination);
}

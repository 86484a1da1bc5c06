namespace CTCal.Core.Schedulers;

/// <summary>A stream of standard normal samples for stochastic sampler steps and for initial latents.</summary>
public interface INoiseSource
{
    /// <summary>Fills <paramref name="destination"/> with the next N(0, 1) samples of the stream.</summary>
    void NextGaussian(Span<float> destination);
}

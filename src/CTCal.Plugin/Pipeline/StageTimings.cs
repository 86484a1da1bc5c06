using System.Diagnostics;
using System.Globalization;

namespace CTCal.Plugin.Pipeline;

/// <summary>The parts of a generation <see cref="StageTimings"/> times.</summary>
internal enum GenerationStep
{
    /// <summary>Tokenizers and text encoders (CLIP; SD3 also CLIP-G and T5).</summary>
    TextEncoder,

    /// <summary>The VAE encoder of an image-to-image start image.</summary>
    VaeEncoder,

    /// <summary>The denoiser calls (UNet or SD3 transformer), with their input and output copies and the guidance combination.</summary>
    Denoiser,

    /// <summary>The whole sampler loop, denoiser calls included (the sampler's own share is this less <see cref="Denoiser"/>).</summary>
    SamplerLoop,

    /// <summary>VAE decode and the conversion to 8-bit RGB.</summary>
    VaeDecoder,

    /// <summary>PNG encoding.</summary>
    Png,
}

/// <summary>
/// Wall-clock time per part of one generation request (all its images), summed from <see cref="Stopwatch"/> timestamps.
/// The pipeline takes a null instance unless the log wants Debug lines, so an unused timing costs a null check per part.
/// One request's thread writes it; not thread-safe.
/// </summary>
internal sealed class StageTimings
{
    private readonly long[] _ticks = new long[Enum.GetValues<GenerationStep>().Length];
    private readonly long _start = Stopwatch.GetTimestamp();

    /// <summary>Denoiser calls made (one per step, or two with split guidance).</summary>
    public int DenoiserCalls { get; set; }

    /// <summary>Adds the time since <paramref name="since"/> (a <see cref="Stopwatch.GetTimestamp"/> value) to <paramref name="step"/>.</summary>
    public void Add(GenerationStep step, long since) => _ticks[(int)step] += Stopwatch.GetTimestamp() - since;

    /// <summary>Milliseconds spent in <paramref name="step"/> so far.</summary>
    public double Milliseconds(GenerationStep step) => _ticks[(int)step] * 1000.0 / Stopwatch.Frequency;

    /// <summary>
    /// <c>text_encoder=.. vae_encoder=.. denoiser=.. sampler=.. vae_decoder=.. png=.. total=..</c> in milliseconds
    /// (sampler: the loop less the denoiser calls; total: since construction), as the Debug log line carries it.
    /// </summary>
    public string Format()
    {
        string F(double ms) => ms.ToString("F1", CultureInfo.InvariantCulture);
        double total = (Stopwatch.GetTimestamp() - _start) * 1000.0 / Stopwatch.Frequency;
        return $"text_encoder={F(Milliseconds(GenerationStep.TextEncoder))} vae_encoder={F(Milliseconds(GenerationStep.VaeEncoder))} " +
            $"denoiser={F(Milliseconds(GenerationStep.Denoiser))} sampler={F(Milliseconds(GenerationStep.SamplerLoop) - Milliseconds(GenerationStep.Denoiser))} " +
            $"vae_decoder={F(Milliseconds(GenerationStep.VaeDecoder))} png={F(Milliseconds(GenerationStep.Png))} total={F(total)} denoiser_calls={DenoiserCalls}";
    }
}

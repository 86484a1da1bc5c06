using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// The denoising objective (DDPM forward process, Ho et al. 2020): x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε; the target is ε
/// (<c>epsilon</c>) or v = sqrt(ᾱ_t)·ε - sqrt(1-ᾱ_t)·x0 (<c>v_prediction</c>, Salimans &amp; Ho 2022), as the model's
/// scheduler config says. Optional noise offset (ε += offset·N(0,1) per sample and channel) and Min-SNR-γ loss weighting
/// (Hang et al. 2023: min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR+1) for v).
/// </summary>
public sealed class DiffusionObjective : ITrainingObjective
{
    private readonly double[] _alphasCumprod;

    public DiffusionObjective(double[] alphasCumprod, string predictionType, double noiseOffset = 0, double? minSnrGamma = null)
    {
        if (alphasCumprod.Length == 0) throw new ArgumentException("empty alphas_cumprod table", nameof(alphasCumprod));
        if (predictionType is not ("epsilon" or "v_prediction"))
            throw new ArgumentException($"prediction_type '{predictionType}' is not trainable here (epsilon or v_prediction)", nameof(predictionType));
        if (noiseOffset < 0) throw new ArgumentOutOfRangeException(nameof(noiseOffset), noiseOffset, "noise offset must be >= 0");
        if (minSnrGamma is <= 0) throw new ArgumentOutOfRangeException(nameof(minSnrGamma), minSnrGamma, "min-SNR gamma must be positive");
        _alphasCumprod = alphasCumprod;
        PredictionType = predictionType;
        NoiseOffset = noiseOffset;
        MinSnrGamma = minSnrGamma;
    }

    public string PredictionType { get; }
    public double NoiseOffset { get; }
    public double? MinSnrGamma { get; }
    public int NumTrainTimesteps => _alphasCumprod.Length;

    private Tensor AlphaBar(Tensor timesteps, Device device) =>
        tensor(_alphasCumprod, device: device).index_select(0, timesteps.to(ScalarType.Int64).to(device)).to(ScalarType.Float32);

    private static Tensor PerSample(Tensor v, Tensor like) => v.reshape(new long[] { -1 }.Concat(Enumerable.Repeat(1L, (int)like.dim() - 1)).ToArray());

    /// <summary>Standard normal noise shaped like <paramref name="latents"/>, plus the noise offset.</summary>
    public Tensor SampleNoise(Tensor latents, Generator generator)
    {
        var noise = randn(latents.shape, dtype: latents.dtype, device: latents.device, generator: generator);
        if (NoiseOffset > 0)
            noise = noise + NoiseOffset * randn(new[] { latents.shape[0], latents.shape[1], 1L, 1L }, dtype: latents.dtype, device: latents.device, generator: generator);
        return noise;
    }

    /// <summary>Uniform training timesteps in [0, T) ([B], int64).</summary>
    public Tensor SampleTimesteps(long batch, Device device, Generator generator) =>
        randint(0, NumTrainTimesteps, new[] { batch }, dtype: ScalarType.Int64, device: device, generator: generator);

    public Tensor AddNoise(Tensor x0, Tensor noise, Tensor timesteps)
    {
        var a = PerSample(AlphaBar(timesteps, x0.device), x0);
        return a.sqrt() * x0 + (1 - a).sqrt() * noise;
    }

    public Tensor Target(Tensor x0, Tensor noise, Tensor timesteps)
    {
        if (PredictionType == "epsilon") return noise;
        var a = PerSample(AlphaBar(timesteps, x0.device), x0);
        return a.sqrt() * noise - (1 - a).sqrt() * x0;
    }

    /// <summary>t_tea = <paramref name="requested"/>; the DDPM objective has only the fixed teacher.</summary>
    public double TeacherTimestep(int requested, TeacherSampling sampling) => sampling == TeacherSampling.Fixed ? requested
        : throw new ArgumentException($"teacher-sampling {sampling.ToString().ToLowerInvariant()} is for flow-matching models; DDPM models use the fixed --teacher-t");

    /// <summary><paramref name="requested"/> for every sample (int64; nothing is drawn).</summary>
    public Tensor TeacherTimesteps(Tensor studentTimesteps, int requested, TeacherSampling sampling, Generator generator) =>
        Timesteps(Enumerable.Repeat(TeacherTimestep(requested, sampling), (int)studentTimesteps.shape[0]).ToList(), studentTimesteps.device);

    /// <summary>Integer timesteps [N] (int64); each value must be a whole number in [0, T).</summary>
    public Tensor Timesteps(IReadOnlyList<double> values, Device device)
    {
        foreach (double v in values)
            if (v != Math.Floor(v) || v < 0 || v >= NumTrainTimesteps)
                throw new ArgumentException($"timestep {v} is not a whole number in 0..{NumTrainTimesteps - 1}", nameof(values));
        return tensor(values.Select(v => (long)v).ToArray(), device: device);
    }

    /// <summary>Mean over the batch of (per-sample MSE · Min-SNR weight); the weight is 1 without Min-SNR.</summary>
    public Tensor Loss(Tensor prediction, Tensor target, Tensor timesteps)
    {
        var perSample = (prediction.to(ScalarType.Float32) - target.to(ScalarType.Float32)).square().flatten(1).mean(new long[] { 1 }); // [B]
        if (MinSnrGamma is not { } gamma) return perSample.mean();
        var a = AlphaBar(timesteps, prediction.device);
        var snr = a / (1 - a);
        var weight = snr.clamp_max(gamma) / (PredictionType == "epsilon" ? snr : snr + 1);
        return (perSample * weight).mean();
    }
}

using CTCal.Trainer.Calibration;
using TorchSharp;
using static TorchSharp.torch;
using CTCal.Core.Text;

namespace CTCal.Trainer.Training;

/// <summary>
/// A prompt as the text encoder sees it: its input ids (one row, e.g. CLIP's 77; a model with several tokenizers may
/// concatenate theirs) and its words with their token positions in the denoiser's text sequence.
/// </summary>
public sealed record PromptTokens(long[] InputIds, IReadOnlyList<PromptWord> Words);

/// <summary>A cross-attention layer: module path and map downscale (latent side / map side).</summary>
public sealed record AttentionLayerInfo(string Path, int Downscale);

/// <summary>
/// What the trainer needs from a text-to-image latent diffusion model (UNet, text encoder, VAE, tokenizer, training
/// schedule). The trainer adapts <see cref="UNet"/> (and <see cref="TextEncoder"/>) in place; the model owns its modules.
/// </summary>
public interface ITrainableDiffusionModel : IDisposable
{
    /// <summary>
    /// The denoiser (a UNet, or SD3's transformer); its module paths are the state-dict names (LoRA keys are
    /// <c>{<see cref="DenoiserComponent"/>}.{path}</c>).
    /// </summary>
    nn.Module UNet { get; }

    /// <summary>The denoiser's component name: the LoRA key prefix and the folder of full weights (<c>unet</c>, <c>transformer</c>).</summary>
    string DenoiserComponent { get; }

    /// <summary>The denoiser's linear layers LoRA adapts by default (module-name suffixes, diffusers names).</summary>
    IReadOnlyList<string> DenoiserLoraTargets { get; }

    /// <summary>The text encoder (LoRA keys <c>text_encoder.{path}</c>).</summary>
    nn.Module TextEncoder { get; }

    IReadOnlyList<AttentionLayerInfo> CrossAttentionLayers { get; }

    /// <summary>Pixel side / latent side (8 for SD).</summary>
    int VaeScaleFactor { get; }

    int LatentChannels { get; }

    /// <summary>ᾱ_t for t = 0..T-1 of the training noise schedule (DDPM models; flow models have none and throw).</summary>
    double[] AlphasCumprod { get; }

    /// <summary><c>epsilon</c> or <c>v_prediction</c> (DDPM), <c>flow</c> (flow matching: the velocity noise - x0).</summary>
    string PredictionType { get; }

    /// <summary>The model's training objective with the run's settings (noise offset, Min-SNR-γ for DDPM; the flow weighting scheme for flow models).</summary>
    ITrainingObjective CreateObjective(TrainingOptions options);

    PromptTokens Tokenize(string prompt);

    /// <summary>[B, ids] int64 rows of <see cref="PromptTokens.InputIds"/> -> the denoiser's text conditioning.</summary>
    TextConditioning EncodeText(Tensor inputIds);

    /// <summary>Pixels [B, 3, H, W] in [-1, 1] -> scaled latents (a sample of the posterior, times the VAE scaling factor).</summary>
    Tensor EncodeImages(Tensor pixels, Generator generator);

    /// <summary>
    /// The deterministic part of <see cref="EncodeImages"/>: pixels [B, 3, H, W] -> the posterior's parameters, one row per
    /// image along dim 0 (for a VAE: mean and log-variance concatenated on the channels). What <see cref="EncodingCache"/> keeps.
    /// </summary>
    Tensor EncodePosterior(Tensor pixels);

    /// <summary>
    /// The random part of <see cref="EncodeImages"/>: a sample of <paramref name="posterior"/> (from <see cref="EncodePosterior"/>)
    /// as scaled latents, drawn from <paramref name="generator"/> exactly as <see cref="EncodeImages"/> draws, so
    /// <c>SamplePosterior(EncodePosterior(p), g)</c> equals <c>EncodeImages(p, g)</c>.
    /// </summary>
    Tensor SamplePosterior(Tensor posterior, Generator generator);

    /// <summary>Scaled latents -> pixels in [-1, 1].</summary>
    Tensor DecodeLatents(Tensor latents);

    /// <summary>
    /// The denoiser's prediction for <paramref name="latents"/> at <paramref name="timesteps"/> ([B], the objective's
    /// dtype); when <paramref name="capturePaths"/> is given, <paramref name="maps"/> holds their attention probabilities
    /// [B, heads, H*W, tokens], each row a distribution over the text tokens (in the caller's dispose scope), otherwise it is empty.
    /// </summary>
    Tensor PredictNoise(Tensor latents, Tensor timesteps, TextConditioning context, IReadOnlyCollection<string>? capturePaths,
        out IReadOnlyDictionary<string, Tensor> maps);
}

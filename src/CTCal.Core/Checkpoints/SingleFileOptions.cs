namespace CTCal.Core.Checkpoints;

/// <summary>
/// What a single-file checkpoint cannot say about itself. Everything is optional: without a value the published SD 1.5 /
/// SD 2.1 settings are assumed and <see cref="SingleFileCheckpoint.Notes"/> says so.
/// </summary>
public sealed record SingleFileOptions
{
    /// <summary>
    /// A diffusers folder whose <c>unet/config.json</c>, <c>vae/config.json</c>, <c>text_encoder/config.json</c>,
    /// <c>scheduler/scheduler_config.json</c> and <c>tokenizer/</c> are used where present instead of the derived ones
    /// (like diffusers' <c>from_single_file(config=...)</c>); its weights are never read.
    /// </summary>
    public string? ConfigFolder { get; init; }

    /// <summary>A folder with the CLIP BPE files (<c>vocab.json</c>, <c>merges.txt</c>); single files carry no tokenizer.</summary>
    public string? TokenizerFolder { get; init; }

    /// <summary>epsilon, v_prediction or sample; the weights cannot tell (default: SD 1.x epsilon, SD 2.x v_prediction).</summary>
    public string? PredictionType { get; init; }

    /// <summary>The native image size (default: SD 1.x 512, SD 2.x 768 with v_prediction, else 512).</summary>
    public int? ImageSize { get; init; }

    /// <summary>Read the UNet from the EMA copy (<c>model_ema.*</c>) instead of <c>model.diffusion_model.*</c>; it must be complete.</summary>
    public bool UseEma { get; init; }
}

namespace CTCal.Contracts;

/// <summary>
/// Optional capability: export a diffusers-layout safetensors checkpoint to an ONNX model folder in the plugin's
/// models folder and register it, so it shows up in <see cref="IImageGenerator.ListModelsAsync"/>.
/// </summary>
public interface IModelExporter
{
    /// <summary>Exports and registers. The returned model is ready for generation.</summary>
    Task<ModelInfo> ExportAsync(
        ModelExportRequest request,
        IProgress<OperationProgress>? progress = null,
        CancellationToken cancellationToken = default);
}

/// <summary>What to export.</summary>
/// <param name="CheckpointFolder">Diffusers-layout folder (<c>unet/</c>, <c>text_encoder/</c>, <c>vae/</c> with safetensors; plain,
/// variant or sharded weights), or an original single-file SD 1.x/2.x checkpoint (<c>.safetensors</c>; see
/// <see cref="TokenizerFolder"/> and the other single-file properties). Pickle files (<c>.ckpt</c>) are refused.</param>
/// <param name="ModelId">Name of the new model folder (letters, digits, '.', '-', '_').</param>
/// <param name="Overwrite">Replace an existing model of that id.</param>
/// <param name="UnetWeights">Fine-tuned UNet weights (a safetensors file) used instead of the checkpoint's own.</param>
/// <param name="Loras">LoRA safetensors files merged into the weights at export (strength 1).</param>
/// <param name="Method">How the weights were trained, recorded with the model: <c>base</c>, <c>vanilla</c> or <c>ctcal</c>
/// (null: <c>base</c> when nothing replaces or is merged into the checkpoint's weights, else not recorded).</param>
public sealed record ModelExportRequest(
    string CheckpointFolder,
    string ModelId,
    bool Overwrite = false,
    string? UnetWeights = null,
    IReadOnlyList<string>? Loras = null,
    string? Method = null)
{
    /// <summary>Single-file checkpoint: folder with the CLIP BPE files (<c>vocab.json</c>, <c>merges.txt</c>); single files carry none.</summary>
    public string? TokenizerFolder { get; init; }

    /// <summary>Single-file checkpoint: a diffusers folder whose configs (and <c>tokenizer/</c>) are used instead of the derived ones.</summary>
    public string? ConfigFolder { get; init; }

    /// <summary>Single-file checkpoint: <c>epsilon</c>, <c>v_prediction</c> or <c>sample</c> (default: SD 1.x epsilon, SD 2.x v_prediction).</summary>
    public string? PredictionType { get; init; }

    /// <summary>Single-file checkpoint: use the EMA UNet weights (<c>model_ema.*</c>).</summary>
    public bool UseEma { get; init; }
}

/// <summary>Progress of a long operation (export, fine-tune).</summary>
/// <param name="Stage">Short machine-friendly stage name (for example <c>unet</c>, <c>step</c>, <c>checkpoint</c>).</param>
/// <param name="Current">Work done in this stage.</param>
/// <param name="Total">Work in this stage (0 when unknown).</param>
/// <param name="Message">Human-readable detail.</param>
/// <param name="Metrics">Numeric values reported with the event (for example <c>loss</c>, <c>lr</c>).</param>
public sealed record OperationProgress(
    string Stage,
    long Current,
    long Total,
    string? Message = null,
    IReadOnlyDictionary<string, double>? Metrics = null);

/// <summary>
/// Optional capability: fine-tune a model with CTCal in a separate trainer process. Progress comes through
/// <see cref="IProgress{T}"/>; cancelling the token stops the trainer. On success the result is exported and
/// registered as a new model.
/// </summary>
public interface IFineTuner
{
    /// <summary>Runs a fine-tune job to its end. Throws <see cref="FineTuneException"/> when the trainer fails.</summary>
    Task<FineTuneResult> FineTuneAsync(
        FineTuneRequest request,
        IProgress<OperationProgress>? progress = null,
        CancellationToken cancellationToken = default);
}

/// <summary>A fine-tune: the trainer job and the id its result is registered under.</summary>
/// <param name="ModelId">Id of the model registered on success.</param>
/// <param name="Job">What the trainer runs: <see cref="FineTuneJob.Model"/> (the diffusers checkpoint to start from),
/// <see cref="FineTuneJob.Data"/> and <see cref="FineTuneJob.Out"/> are required. The fine-tuner writes it as the trainer's
/// job file (its own progress mode set to <c>json</c>) and passes nothing else on the trainer's command line.</param>
public sealed record FineTuneRequest(string ModelId, FineTuneJob Job);

/// <summary>Result of a finished fine-tune.</summary>
/// <param name="CheckpointFolder">The final checkpoint the trainer reported.</param>
/// <param name="Model">The exported, registered model.</param>
/// <param name="Steps">Steps the trainer reported as done.</param>
public sealed record FineTuneResult(string CheckpointFolder, ModelInfo Model, long Steps);

/// <summary>The trainer process reported an error or exited unsuccessfully.</summary>
public sealed class FineTuneException : Exception
{
    /// <summary>Creates the exception.</summary>
    public FineTuneException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

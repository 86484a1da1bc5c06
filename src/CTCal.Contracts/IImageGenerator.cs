namespace CTCal.Contracts;

/// <summary>
/// Text-to-image generation over the models a plugin knows. Implementations are safe to call concurrently; each call
/// owns nothing after it returns (the PNG bytes belong to the caller).
/// </summary>
public interface IImageGenerator
{
    /// <summary>The models available now (rescans the plugin's models folder).</summary>
    Task<IReadOnlyList<ModelInfo>> ListModelsAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Generates <see cref="GenerationRequest.BatchCount"/> images. Image <c>i</c> uses seed <c>Seed + i</c>, so any image
    /// can be reproduced alone with the same parameters. Throws <see cref="ArgumentException"/> for invalid requests,
    /// <see cref="GenerationOutOfMemoryException"/> when the request needs more memory than the plugin can get (the model
    /// stays usable for smaller requests), <see cref="OperationCanceledException"/> when cancelled.
    /// </summary>
    Task<GenerationResult> GenerateAsync(
        GenerationRequest request,
        IProgress<GenerationProgress>? progress = null,
        CancellationToken cancellationToken = default);

    /// <summary>Releases the inference sessions of a loaded model. Returns false when it was not loaded.</summary>
    bool UnloadModel(string modelId);
}

/// <summary>A model a plugin can generate with.</summary>
/// <param name="Id">Identifier to pass in <see cref="GenerationRequest.Model"/> (the folder name).</param>
/// <param name="Name">Display name (from the model's manifest when present).</param>
/// <param name="Folder">Absolute path of the model folder.</param>
/// <param name="Family">Model family, for example <c>sd1</c> or <c>sd2</c>.</param>
/// <param name="DefaultWidth">Native width in pixels.</param>
/// <param name="DefaultHeight">Native height in pixels.</param>
/// <param name="HasVaeEncoder">Whether the folder has a VAE encoder (image-to-image capable).</param>
/// <param name="Description">Free text from the manifest, or null.</param>
public sealed record ModelInfo(
    string Id,
    string Name,
    string Folder,
    string Family,
    int DefaultWidth,
    int DefaultHeight,
    bool HasVaeEncoder,
    string? Description = null);

/// <summary>What to generate. Null members take the plugin's or model's defaults.</summary>
public sealed record GenerationRequest
{
    /// <summary>Model id from <see cref="IImageGenerator.ListModelsAsync"/>.</summary>
    public required string Model { get; init; }

    /// <summary>The prompt.</summary>
    public required string Prompt { get; init; }

    /// <summary>The negative prompt (empty: unconditional).</summary>
    public string NegativePrompt { get; init; } = "";

    /// <summary>Width in pixels, a multiple of 8 (null: the model's native size).</summary>
    public int? Width { get; init; }

    /// <summary>Height in pixels, a multiple of 8 (null: the model's native size).</summary>
    public int? Height { get; init; }

    /// <summary>Denoising steps.</summary>
    public int Steps { get; init; } = 25;

    /// <summary>Classifier-free guidance scale (1 disables guidance).</summary>
    public double GuidanceScale { get; init; } = 7.5;

    /// <summary>Seed of the first image (null: chosen at random and reported in the result).</summary>
    public long? Seed { get; init; }

    /// <summary>Number of images.</summary>
    public int BatchCount { get; init; } = 1;

    /// <summary>Scheduler name such as <c>euler_a</c> or <c>ddim</c> (null: the plugin's default).</summary>
    public string? Scheduler { get; init; }

    /// <summary>How prompts longer than the text encoder's window (77 tokens) are handled.</summary>
    public PromptOverflow PromptOverflow { get; init; } = PromptOverflow.Chunk;

    /// <summary>
    /// Image-to-image: a PNG (8-bit grey/RGB, with or without alpha) to start from instead of pure noise. Its size must
    /// equal Width x Height (null sizes take the image's). Needs a model with a VAE encoder.
    /// </summary>
    public byte[]? InitImage { get; init; }

    /// <summary>Image-to-image: how much of the denoising schedule runs (0 keeps the image, 1 ignores it).</summary>
    public double Strength { get; init; } = 0.75;
}

/// <summary>Handling of prompts longer than the text encoder's 77-token window.</summary>
public enum PromptOverflow
{
    /// <summary>Encode 77-token chunks and concatenate their embeddings along the sequence axis.</summary>
    Chunk,

    /// <summary>Cut the prompt at the window and report a warning.</summary>
    Truncate,
}

/// <summary>The parameters a generation actually used (defaults filled in; <c>Strength</c> only for image-to-image).</summary>
public sealed record GenerationParameters(
    string Model,
    string Prompt,
    string NegativePrompt,
    int Width,
    int Height,
    int Steps,
    double GuidanceScale,
    long Seed,
    int BatchCount,
    string Scheduler,
    double? Strength = null);

/// <summary>One generated image.</summary>
/// <param name="Index">Position in the batch.</param>
/// <param name="Seed">The seed that reproduces this image alone.</param>
/// <param name="Png">PNG file bytes, with the parameters in tEXt chunks.</param>
public sealed record GeneratedImage(int Index, long Seed, byte[] Png);

/// <summary>Result of <see cref="IImageGenerator.GenerateAsync"/>.</summary>
/// <param name="Images">The images, in batch order.</param>
/// <param name="Parameters">The parameters used.</param>
/// <param name="ExecutionProvider">The ONNX Runtime execution provider that ran the model (for example <c>CPU</c>).</param>
/// <param name="Warnings">Things the caller should know (prompt truncated, provider fallback).</param>
public sealed record GenerationResult(
    IReadOnlyList<GeneratedImage> Images,
    GenerationParameters Parameters,
    string ExecutionProvider,
    IReadOnlyList<string> Warnings);

/// <summary>Stage of a generation.</summary>
public enum GenerationStage
{
    LoadingModel,
    EncodingPrompt,
    Denoising,
    Decoding,
    Done,
}

/// <summary>Progress of a generation.</summary>
/// <param name="Stage">Current stage.</param>
/// <param name="ImageIndex">Image being worked on (0-based).</param>
/// <param name="ImageCount">Images in the request.</param>
/// <param name="Step">Denoising steps done for this image.</param>
/// <param name="TotalSteps">Denoising steps per image.</param>
public sealed record GenerationProgress(GenerationStage Stage, int ImageIndex, int ImageCount, int Step, int TotalSteps);

/// <summary>
/// A generation (or the model load it started) needed more memory than the plugin could get: a memory limit in the
/// plugin's settings, the device's memory, or the process's. The message names the request (size, images, model) and
/// what to lower. Nothing is left half-done: the model stays loaded and smaller requests work.
/// </summary>
public sealed class GenerationOutOfMemoryException : Exception
{
    /// <summary>Creates the exception.</summary>
    public GenerationOutOfMemoryException(string message, GenerationParameters parameters, Exception? inner = null)
        : base(message, inner)
    {
        Parameters = parameters;
    }

    /// <summary>The request that did not fit, with defaults filled in.</summary>
    public GenerationParameters Parameters { get; }
}

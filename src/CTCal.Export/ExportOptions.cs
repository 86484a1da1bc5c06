using System.Globalization;
using CTCal.Core.Checkpoints;
using CTCal.Export.Onnx;

namespace CTCal.Export;

/// <summary>
/// The model parts an export writes (Optimum/OnnxStack folder names). SD 1.x/2.x folders have text_encoder, unet and the two
/// VAE parts; SD3 folders have text_encoder, text_encoder_2, transformer, the two VAE parts and optionally text_encoder_3
/// (T5). <see cref="All"/> takes the parts of the source's family (text_encoder_3 when the source has it); naming a part
/// the family lacks is refused.
/// </summary>
[Flags]
public enum ExportComponents
{
    None = 0,
    TextEncoder = 1,
    Unet = 2,
    VaeDecoder = 4,
    VaeEncoder = 8,
    /// <summary>SD3: the MMDiT (<c>transformer/</c>).</summary>
    Transformer = 16,
    /// <summary>SD3: the second CLIP text encoder with projection (<c>text_encoder_2/</c>, CLIP-G).</summary>
    TextEncoder2 = 32,
    /// <summary>SD3: the T5 encoder (<c>text_encoder_3/</c>), optional.</summary>
    TextEncoder3 = 64,
    All = TextEncoder | Unet | VaeDecoder | VaeEncoder | Transformer | TextEncoder2 | TextEncoder3,
}

/// <summary>
/// Which ONNX Runtime execution provider the graphs are written for. <see cref="Plain"/> (the default) uses only standard
/// ONNX operators (opset 17) and runs anywhere; the others replace UNet and VAE subgraphs with the fused <c>com.microsoft</c>
/// contrib operators that provider implements (<see cref="Onnx.FusedOps"/> lists them per profile), so such a model needs
/// ONNX Runtime and that provider. Recorded in the manifest as <see cref="ExportOptimizationNames"/> spells it.
/// </summary>
public enum ExportOptimization
{
    Plain = 0,
    /// <summary>CPUExecutionProvider: MultiHeadAttention, Gelu, FastGelu (SD3), GEGLU as two half Gemms (<see cref="Onnx.FusedOps"/>).</summary>
    Cpu = 1,
    /// <summary>CUDAExecutionProvider: MultiHeadAttention, Gelu, FastGelu (SD3), SkipLayerNormalization, GroupNorm (NHWC, SiLU fused; channel counts CUDA's kernel takes), SkipGroupNorm (a resnet's time embedding add and norm2) and BiasSplitGelu (SD's widths).</summary>
    Cuda = 2,
    /// <summary>DmlExecutionProvider: MultiHeadAttention, SkipLayerNormalization, GroupNorm (every channel count) and BiasSplitGelu (every width, so no Gelu); no FastGelu or SkipGroupNorm.</summary>
    DirectML = 3,
}

/// <summary>The command-line and manifest spellings of <see cref="ExportOptimization"/>.</summary>
public static class ExportOptimizationNames
{
    /// <summary><c>plain</c>, <c>cpu</c>, <c>cuda</c>, <c>directml</c>: <see cref="CTCal.Core.Models.OnnxModelManifest.Optimizations"/>.</summary>
    public static string Name(ExportOptimization value) => value switch
    {
        ExportOptimization.Plain => "plain",
        ExportOptimization.Cpu => "cpu",
        ExportOptimization.Cuda => "cuda",
        ExportOptimization.DirectML => "directml",
        _ => throw new ArgumentOutOfRangeException(nameof(value), value, $"optimize value {(int)value} is not one of plain, cpu, cuda, directml"),
    };

    /// <summary>Parses a name (case-insensitive); throws <see cref="ArgumentException"/> naming the option and the value otherwise.</summary>
    public static ExportOptimization Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "plain" => ExportOptimization.Plain,
        "cpu" => ExportOptimization.Cpu,
        "cuda" => ExportOptimization.Cuda,
        "directml" or "dml" => ExportOptimization.DirectML,
        _ => throw new ArgumentException($"--optimize '{text}' is not one of plain, cpu, cuda, directml"),
    };
}

/// <summary>
/// The graphs' numeric precision. Inputs and outputs are float32 in every case, so a host feeds and reads each precision
/// alike. Recorded in the manifest as <see cref="ExportPrecisionNames"/> spells it.
/// </summary>
public enum ExportPrecision
{
    /// <summary>float32 weights and compute.</summary>
    Fp32 = 0,
    /// <summary>
    /// float16 storage only: each weight is a FLOAT16 initializer followed by a Cast to float, compute stays float32 (half the
    /// disk and memory; what <c>--fp16</c> has always written).
    /// </summary>
    Fp16Weights = 1,
    /// <summary>
    /// float16 compute: weights used as float16, activations float16, float32 kept where precision demands it
    /// (<see cref="Onnx.Float16Compute"/>: normalisations, the attention scores and softmax, the timestep embedding). T5
    /// stays float32 compute over float16 weights.
    /// </summary>
    Fp16 = 2,
}

/// <summary>The command-line and manifest spellings of <see cref="ExportPrecision"/>.</summary>
public static class ExportPrecisionNames
{
    /// <summary><c>fp32</c>, <c>fp16-weights</c>, <c>fp16</c>: <see cref="CTCal.Core.Models.OnnxModelManifest.Precisions"/>.</summary>
    public static string Name(ExportPrecision value) => value switch
    {
        ExportPrecision.Fp32 => "fp32",
        ExportPrecision.Fp16Weights => "fp16-weights",
        ExportPrecision.Fp16 => "fp16",
        _ => throw new ArgumentOutOfRangeException(nameof(value), value, $"precision value {(int)value} is not one of fp32, fp16-weights, fp16"),
    };

    /// <summary>Parses a name (case-insensitive); throws <see cref="ArgumentException"/> naming the option and the value otherwise.</summary>
    public static ExportPrecision Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" => ExportPrecision.Fp32,
        "fp16-weights" => ExportPrecision.Fp16Weights,
        "fp16" or "float16" => ExportPrecision.Fp16,
        _ => throw new ArgumentException($"--precision '{text}' is not one of fp32, fp16-weights, fp16"),
    };
}

/// <summary>A LoRA file merged at export with the given strength.</summary>
public sealed record LoraSpec(string Path, float Scale = 1f)
{
    /// <summary>Parses <c>path[:scale]</c>; the suffix counts as a scale only when it is a number (so <c>C:\x</c> stays a path).</summary>
    public static LoraSpec Parse(string text)
    {
        int colon = text.LastIndexOf(':');
        if (colon > 0 && float.TryParse(text[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out float scale) && float.IsFinite(scale))
            return new LoraSpec(text[..colon], scale);
        return new LoraSpec(text);
    }
}

/// <summary>What to export and where.</summary>
public sealed record ExportOptions
{
    /// <summary>
    /// A diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/; weights plain,
    /// variant or sharded), or an original single-file SD 1.x/2.x checkpoint (<c>.safetensors</c>; see <see cref="SingleFile"/>).
    /// </summary>
    public required string ModelFolder { get; init; }

    /// <summary>A folder's weights variant to prefer (e.g. fp16: <c>diffusion_pytorch_model.fp16.safetensors</c>); the plain file is the fallback.</summary>
    public string? Variant { get; init; }

    /// <summary>For a single-file checkpoint: config folder, tokenizer folder, prediction type, image size, EMA weights.</summary>
    public SingleFileOptions? SingleFile { get; init; }

    /// <summary>The ONNX folder to create (or replace as a whole).</summary>
    public required string OutputFolder { get; init; }

    /// <summary>LoRA files merged into the UNet / text encoder weights.</summary>
    public IReadOnlyList<LoraSpec> Loras { get; init; } = [];

    /// <summary>Fine-tuned UNet weights (safetensors) used instead of the model folder's unet weights.</summary>
    public string? UnetWeights { get; init; }

    /// <summary>The graphs' precision (<see cref="ExportPrecision.Fp32"/> by default).</summary>
    public ExportPrecision Precision { get; init; } = ExportPrecision.Fp32;

    /// <summary>
    /// Whether weights are stored as float16 (<see cref="Precision"/> other than fp32). Setting it true is the older spelling
    /// of <see cref="ExportPrecision.Fp16Weights"/> (storage only, compute float32); false sets fp32.
    /// </summary>
    public bool Fp16
    {
        get => Precision != ExportPrecision.Fp32;
        init => Precision = value ? ExportPrecision.Fp16Weights : ExportPrecision.Fp32;
    }

    public ExportComponents Components { get; init; } = ExportComponents.All;

    /// <summary>
    /// The execution provider the UNet and VAE graphs are fused for (<see cref="ExportOptimization.Plain"/>: standard operators
    /// only). The SD3 transformer takes MultiHeadAttention and FastGelu where the profile has them; text encoders and T5 are
    /// written plain whatever the profile.
    /// </summary>
    public ExportOptimization Optimize { get; init; } = ExportOptimization.Plain;

    /// <summary>
    /// Step caching (DeepCache): when set, <c>unet/model.onnx</c> also outputs the deep feature entering the last
    /// <c>StepCacheBranch</c> up-block layers and <c>unet_shallow/model.onnx</c> recomputes only those layers and the
    /// layers feeding their skip connections (<see cref="CTCal.Core.Models.ManifestStepCache"/>); 1 to the UNet's up-block
    /// layers (levels x (layers_per_block + 1)), smaller is shallower and faster. SD 1.x/2.x with the UNet exported only.
    /// </summary>
    public int? StepCacheBranch { get; init; }

    /// <summary>Total weight bytes of a graph above which its weights go to model.onnx.data (external data).</summary>
    public long ExternalDataThreshold { get; init; } = OnnxModelWriter.DefaultExternalDataThreshold;

    /// <summary>
    /// Recorded in the manifest: the training method of the exported weights (<c>base</c>, <c>vanilla</c> or <c>ctcal</c>) and
    /// its step count. When null the manifest says <c>base</c> if nothing replaces or is merged into the source weights, and
    /// records no method otherwise (an unknown fine-tune is never labelled by guess).
    /// </summary>
    public string? TrainingMethod { get; init; }

    public int? TrainingSteps { get; init; }

    /// <summary>Replace an existing, non-empty output folder that was not written by this exporter (no ctcal_manifest.json).</summary>
    public bool Force { get; init; }
}

/// <summary>Progress of an export: the part being written and the weight bytes done of that part.</summary>
public sealed record ExportProgress(string Component, string Stage, long BytesDone, long BytesTotal);

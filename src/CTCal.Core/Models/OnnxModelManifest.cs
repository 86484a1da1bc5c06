using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace CTCal.Core.Models;

/// <summary>A LoRA merged into an exported model: its file, strength and SHA-256.</summary>
public sealed record ManifestLora(string Path, double Scale, string Sha256);

/// <summary>A weights file used instead of the source folder's own (a full fine-tune's UNet): its path and SHA-256.</summary>
public sealed record ManifestWeights(string Path, string Sha256);

/// <summary>
/// The step-cache graphs of an SD 1.x/2.x export (DeepCache, Ma et al. 2023): <c>unet/model.onnx</c> has a second output,
/// <see cref="FeatureName"/>, the deep feature entering the last <see cref="Branch"/> up-block layers (resnet + attention
/// pairs, counted from the output end), and <see cref="ShallowGraph"/> takes <c>sample</c>, <c>timestep</c>,
/// <c>encoder_hidden_states</c> and that feature and recomputes only <c>conv_in</c>, the down-block layers whose outputs
/// are the skip connections of those up layers, the up layers themselves and <c>conv_norm_out</c> + <c>conv_out</c>.
/// </summary>
/// <param name="Branch">Up-block layers the shallow graph recomputes, 1 to (levels x (layers_per_block + 1)).</param>
/// <param name="FeatureChannels">Channels of the cached feature.</param>
/// <param name="FeatureDownscale">Latent cells per feature cell on each axis (a power of 2).</param>
/// <param name="FullStepGflops">GFLOPs of one full UNet call (batch 1, native size, 77 tokens; Conv, Gemm and attention MatMuls).</param>
/// <param name="ShallowStepGflops">GFLOPs of one shallow call, counted the same way.</param>
public sealed record ManifestStepCache(int Branch, int FeatureChannels, int FeatureDownscale, double? FullStepGflops = null, double? ShallowStepGflops = null)
{
    /// <summary>The shallow graph's folder, relative to the model folder.</summary>
    public const string ShallowFolder = "unet_shallow";

    /// <summary>The shallow graph, relative to the model folder.</summary>
    public const string ShallowGraph = ShallowFolder + "/model.onnx";

    /// <summary>The full UNet's extra output and the shallow graph's extra input: <see cref="FeatureShape"/>.</summary>
    public const string FeatureName = "deep_feature";

    /// <summary>
    /// The shape of <see cref="FeatureName"/> for a latent of <paramref name="latentHeight"/> x <paramref name="latentWidth"/>:
    /// [batch, channels, h, w], the latent size halved, rounding up as the stride-2 downsampling convolutions do, once per
    /// factor 2 of <see cref="FeatureDownscale"/>.
    /// </summary>
    public long[] FeatureShape(long batch, long latentHeight, long latentWidth)
    {
        long h = latentHeight, w = latentWidth;
        for (int d = FeatureDownscale; d > 1; d /= 2)
        {
            h = (h + 1) / 2; // [.., h, w] -> [.., ceil(h / 2), ceil(w / 2)]
            w = (w + 1) / 2;
        }

        return [batch, FeatureChannels, h, w];
    }

    /// <summary>Checks the fields; throws naming the field.</summary>
    /// <exception cref="InvalidDataException">a field out of its range.</exception>
    public void Validate(string source)
    {
        if (Branch < 1) throw new InvalidDataException($"{source}: stepCache.branch must be >= 1, got {Branch}");
        if (FeatureChannels < 1) throw new InvalidDataException($"{source}: stepCache.featureChannels must be >= 1, got {FeatureChannels}");
        if (FeatureDownscale < 1 || (FeatureDownscale & (FeatureDownscale - 1)) != 0)
            throw new InvalidDataException($"{source}: stepCache.featureDownscale must be a power of 2, got {FeatureDownscale}");
        foreach (var (name, value) in new[] { ("fullStepGflops", FullStepGflops), ("shallowStepGflops", ShallowStepGflops) })
            if (value is { } v && (!double.IsFinite(v) || v < 0))
                throw new InvalidDataException($"{source}: stepCache.{name} must be a number >= 0, got {v}");
    }
}

/// <summary>
/// <c>ctcal_manifest.json</c>, the record an ONNX model folder carries about itself. The exporter writes it and the plugin
/// reads it through this one type (so the two cannot drift apart). Every field a reader needs to serve the model without
/// guessing is here: <see cref="Family"/>, the native <see cref="Width"/> x <see cref="Height"/>, the VAE
/// <see cref="VaeScalingFactor"/>, the <see cref="PredictionType"/>; and what was exported: the <see cref="Method"/> that
/// trained the weights (<c>base</c>, <c>vanilla</c> or <c>ctcal</c>), the source folder, the replacement UNet weights and
/// LoRAs with their hashes, the exporter's version and the graph format. Folders written by other tools have no manifest;
/// manifests of format version 1 (exporter before this record) lack the serving fields, which are then null.
/// </summary>
public sealed record OnnxModelManifest
{
    public const string FileName = "ctcal_manifest.json";
    public const string FormatName = "ctcal-onnx";
    public const int CurrentFormatVersion = 2;

    /// <summary>Values of <see cref="Method"/>.</summary>
    public static IReadOnlyList<string> Methods { get; } = ["base", "vanilla", "ctcal"];

    /// <summary>Values of <see cref="Optimize"/>: the export profile (which execution provider's fused operators the graphs use).</summary>
    public static IReadOnlyList<string> Optimizations { get; } = ["plain", "cpu", "cuda", "directml"];

    /// <summary>
    /// Values of <see cref="Precision"/>: <c>fp32</c> (float32 weights and compute), <c>fp16-weights</c> (float16 storage,
    /// a Cast to float after each weight, float32 compute) and <c>fp16</c> (float16 weights and activations with float32
    /// islands for normalisations, softmax and the timestep embedding). Inputs and outputs are float32 in all three.
    /// </summary>
    public static IReadOnlyList<string> Precisions { get; } = ["fp32", "fp16-weights", "fp16"];

    public string Format { get; init; } = FormatName;
    public int FormatVersion { get; init; } = CurrentFormatVersion;
    /// <summary>Display name (the folder name when absent).</summary>
    public string? Name { get; init; }
    public string? Description { get; init; }
    /// <summary><see cref="ModelFamily.Sd1"/>, <see cref="ModelFamily.Sd2"/> or <see cref="ModelFamily.Sd3"/>.</summary>
    public string? Family { get; init; }
    /// <summary>Native image width in pixels (the UNet's sample size times the VAE's scale factor).</summary>
    public int? Width { get; init; }
    public int? Height { get; init; }
    public double? VaeScalingFactor { get; init; }
    /// <summary>
    /// The VAE's <c>shift_factor</c> (SD3: 0.0609), null when the VAE has none (0). Neither factor is in the graphs: the
    /// denoiser's latents are (z - shift) * scaling, and the decoder takes latents / scaling + shift.
    /// </summary>
    public double? VaeShiftFactor { get; init; }
    /// <summary><c>epsilon</c>, <c>v_prediction</c> or <c>sample</c>, from the scheduler config; null for SD3 (flow matching, whose scheduler has none).</summary>
    public string? PredictionType { get; init; }
    /// <summary>How the weights were trained: <c>base</c> (nothing merged), <c>vanilla</c> or <c>ctcal</c>; null when not recorded.</summary>
    public string? Method { get; init; }
    /// <summary>Training steps of the fine-tune, when recorded.</summary>
    public int? Steps { get; init; }
    public string? SourceFolder { get; init; }
    public ManifestWeights? UnetWeights { get; init; }
    public IReadOnlyList<ManifestLora> Loras { get; init; } = [];
    /// <summary>"CTCal.Export x.y.z.w".</summary>
    public string? Exporter { get; init; }
    public string? CreatedUtc { get; init; }
    public int? Opset { get; init; }
    public int? IrVersion { get; init; }
    /// <summary>Whether the weights are stored as float16 (true for both <c>fp16-weights</c> and <c>fp16</c> <see cref="Precision"/>).</summary>
    public bool Fp16 { get; init; }
    /// <summary>
    /// The graphs' numeric precision (<see cref="Precisions"/>). Null in manifests written before the field existed, whose
    /// precision <see cref="Fp16"/> tells (<see cref="PrecisionOrDerived"/>).
    /// </summary>
    public string? Precision { get; init; }

    /// <summary><see cref="Precision"/>, with a manifest that predates the field read as <c>fp16-weights</c> or <c>fp32</c> from <see cref="Fp16"/>.</summary>
    [JsonIgnore]
    public string PrecisionOrDerived => Precision ?? (Fp16 ? "fp16-weights" : "fp32");
    /// <summary>
    /// The export profile (<see cref="Optimizations"/>): <c>plain</c> graphs use standard ONNX operators only; <c>cpu</c>,
    /// <c>cuda</c> and <c>directml</c> graphs contain <c>com.microsoft</c> contrib operators that need ONNX Runtime with that
    /// execution provider. Null in manifests written before the field existed, which were all plain (<see cref="OptimizeOrPlain"/>).
    /// </summary>
    public string? Optimize { get; init; }

    /// <summary>
    /// The step-cache graphs (<see cref="ManifestStepCache"/>), or null when the model was exported without them
    /// (<c>ctcal-export export --step-cache-branch K</c> writes them).
    /// </summary>
    public ManifestStepCache? StepCache { get; init; }

    /// <summary><see cref="Optimize"/>, with a manifest that predates the field read as <c>plain</c>.</summary>
    [JsonIgnore]
    public string OptimizeOrPlain => Optimize ?? "plain";
    /// <summary>Per exported part: its files and settings (free-form, written by the exporter for people and tools).</summary>
    public JsonObject? Components { get; init; }

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
    };

    /// <summary>Checks the fields a writer must get right; throws naming the field.</summary>
    /// <exception cref="InvalidDataException">a field out of its range.</exception>
    public void Validate(string source = FileName)
    {
        if (Format != FormatName) throw new InvalidDataException($"{source}: format must be '{FormatName}', got '{Format}'");
        if (FormatVersion < 1) throw new InvalidDataException($"{source}: formatVersion must be at least 1, got {FormatVersion}");
        if (Family is not null && !ModelFamily.Known.Contains(Family))
            throw new InvalidDataException($"{source}: family must be one of {string.Join(", ", ModelFamily.Known)}, got '{Family}'");
        if (Method is not null && !Methods.Contains(Method))
            throw new InvalidDataException($"{source}: method must be one of {string.Join(", ", Methods)}, got '{Method}'");
        foreach (var (name, value) in new[] { ("width", Width), ("height", Height) })
            if (value is { } v && (v <= 0 || v % 8 != 0))
                throw new InvalidDataException($"{source}: {name} must be a positive multiple of 8, got {v}");
        if (VaeScalingFactor is { } s && (!double.IsFinite(s) || s <= 0))
            throw new InvalidDataException($"{source}: vaeScalingFactor must be a positive number, got {s}");
        if (VaeShiftFactor is { } shift && !double.IsFinite(shift))
            throw new InvalidDataException($"{source}: vaeShiftFactor must be a finite number, got {shift}");
        if (Optimize is not null && !Optimizations.Contains(Optimize))
            throw new InvalidDataException($"{source}: optimize must be one of {string.Join(", ", Optimizations)}, got '{Optimize}'");
        StepCache?.Validate(source);
        if (StepCache is not null && Family == ModelFamily.Sd3)
            throw new InvalidDataException($"{source}: stepCache is for UNet models; family sd3 has a transformer");
        if (Precision is not null && !Precisions.Contains(Precision))
            throw new InvalidDataException($"{source}: precision must be one of {string.Join(", ", Precisions)}, got '{Precision}'");
        if (Precision is not null && (Precision != "fp32") != Fp16)
            throw new InvalidDataException($"{source}: precision '{Precision}' {(Fp16 ? "stores float32 weights, but fp16 is true" : "stores float16 weights, but fp16 is false")}");
        if (Steps is < 0) throw new InvalidDataException($"{source}: steps must be >= 0, got {Steps}");
    }

    /// <summary>The manifest as JSON text (camelCase keys, null fields left out).</summary>
    public string ToJson()
    {
        Validate();
        return JsonSerializer.Serialize(this, Json);
    }

    /// <summary>Parses <paramref name="json"/>; <paramref name="source"/> names the file in errors.</summary>
    /// <exception cref="InvalidDataException">not JSON, a field of the wrong type, or a value out of range; names the file.</exception>
    public static OnnxModelManifest Parse(string json, string source = FileName)
    {
        OnnxModelManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<OnnxModelManifest>(json, Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not a valid manifest ({e.Message})", e);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new InvalidDataException($"{source}: not valid text ({e.Message})", e);
        }
        if (manifest is null) throw new InvalidDataException($"{source}: empty manifest (null)");
        manifest.Validate(source);
        return manifest;
    }

    /// <summary>Writes the manifest to <c>{folder}/ctcal_manifest.json</c>.</summary>
    public void Write(string folder) => File.WriteAllText(Path.Combine(folder, FileName), ToJson());

    /// <summary>The manifest of <paramref name="folder"/>, or null when it has none (a folder made by another tool).</summary>
    /// <exception cref="InvalidDataException">the manifest exists but is broken; names the file.</exception>
    public static OnnxModelManifest? TryRead(string folder)
    {
        string path = Path.Combine(folder, FileName);
        return File.Exists(path) ? Parse(File.ReadAllText(path), path) : null;
    }
}

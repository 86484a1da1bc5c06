using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;

namespace CTCal.Plugin.Models;

/// <summary>
/// A Stable Diffusion 1.x/2.x ONNX folder in the Optimum/OnnxStack layout: <c>tokenizer/</c>,
/// <c>text_encoder/model.onnx</c>, <c>unet/model.onnx</c>, <c>vae_decoder/model.onnx</c>, optional
/// <c>vae_encoder/model.onnx</c>, and usually <c>scheduler/scheduler_config.json</c>, <c>model_index.json</c>, each part's
/// <c>config.json</c> and a <c>ctcal_manifest.json</c> (<see cref="OnnxModelManifest"/>, read through Core: the exporter
/// writes the same record).
/// <para>Folders made by other tools may have only the four <c>model.onnx</c> parts and <c>tokenizer/</c> (OnnxStack's
/// converter). What their configs would say is then read from the graphs (<see cref="GraphInference"/>) or assumed, and
/// stated in <see cref="InferredDefaults"/>, which the catalog logs: the family from the text encoder's architecture
/// (768 wide + 12 layers = SD1, 1024 wide + 23 layers = SD2, else its activation; never a width alone), latent channels
/// and the cross-attention width from the UNet's inputs, the native size from a fixed UNet sample size or 512, and,
/// without a scheduler config, diffusers' SD scheduler (PNDM, scaled_linear 0.00085..0.012) with epsilon prediction:
/// v-prediction cannot be read from a graph, so a v-model needs <c>scheduler/scheduler_config.json</c>.</para>
/// <para>SD3 folders (<c>transformer/</c> instead of <c>unet/</c>) are read by <see cref="LoadSD3"/>.</para>
/// </summary>
/// <param name="VaeScaleFactor">Pixels per latent cell: 2^(VAE blocks - 1), 8 for every SD 1.x/2.x VAE.</param>
internal sealed partial record OnnxModelFolder(ModelInfo Info, double VaeScalingFactor, int VaeScaleFactor = 8)
{
    /// <summary>Files a folder must have, relative to it (model_index.json and the scheduler config are optional).</summary>
    public static readonly string[] RequiredFiles =
    {
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "text_encoder/model.onnx",
        "unet/model.onnx",
        "vae_decoder/model.onnx",
    };

    public const double DefaultVaeScalingFactor = 0.18215;

    public string Folder => Info.Folder;

    public string TokenizerFolder => Path.Combine(Folder, "tokenizer");

    public string TextEncoderPath => Path.Combine(Folder, "text_encoder", "model.onnx");

    public string UnetPath => Path.Combine(Folder, "unet", "model.onnx");

    public string VaeDecoderPath => Path.Combine(Folder, "vae_decoder", "model.onnx");

    public string? VaeEncoderPath => Info.HasVaeEncoder ? Path.Combine(Folder, "vae_encoder", "model.onnx") : null;

    public string SchedulerConfigPath => Path.Combine(Folder, "scheduler", "scheduler_config.json");

    /// <summary>The VAE's shift_factor (SD3: latents = (mean - shift) * scaling_factor); 0 for SD 1.x/2.x.</summary>
    public double VaeShiftFactor { get; init; }

    /// <summary>
    /// The export profile of the manifest (<c>optimize</c>: plain, cpu, cuda or directml; plain without a manifest or in
    /// older ones). The cuda and directml profiles hold GPU-only contrib operators (GroupNorm, BiasSplitGelu).
    /// </summary>
    public string ExportProfile { get; init; } = "plain";

    /// <summary>
    /// The step-cache graphs (DeepCache) from the manifest, or null when the model was exported without them: then
    /// <c>unet/model.onnx</c> also outputs <see cref="ManifestStepCache.FeatureName"/> and <see cref="ShallowUnetPath"/> exists.
    /// </summary>
    public ManifestStepCache? StepCache { get; init; }

    /// <summary>The step-cache shallow UNet (<see cref="ManifestStepCache.ShallowGraph"/>), meaningful when <see cref="StepCache"/> is set.</summary>
    public string ShallowUnetPath => Path.Combine(Folder, ManifestStepCache.ShallowFolder, "model.onnx");
    /// The manifest's precision (<see cref="OnnxModelManifest.Precisions"/>: fp32, fp16-weights or fp16; read from the fp16
    /// flag in older manifests, fp32 without one). Inputs and outputs are float32 in all three.
    /// </summary>
    public string Precision { get; init; } = "fp32";

    /// <summary>The scheduler config as read when the folder was loaded, or the assumed default (null only for records made by hand in tests).</summary>
    public SchedulerConfig? Scheduler { get; init; }

    /// <summary>
    /// One line stating every default that was read from the graphs or assumed because the folder lacks the manifest and
    /// configs that would say it; null when nothing had to be inferred.
    /// </summary>
    public string? InferredDefaults { get; init; }

    /// <summary>Whether <paramref name="folder"/> looks like a model folder at all (so missing parts are worth reporting).</summary>
    public static bool LooksLikeModel(string folder) =>
        File.Exists(Path.Combine(folder, "model_index.json")) || Directory.Exists(Path.Combine(folder, "unet"));

    /// <summary>Reads a model folder; throws <see cref="InvalidDataException"/> naming the missing file or bad field.</summary>
    public static OnnxModelFolder Load(string folder)
    {
        folder = Path.GetFullPath(folder);
        if (IsSD3Folder(folder))
        {
            return LoadSD3(folder);
        }

        var missing = RequiredFiles.Where(f => !File.Exists(Path.Combine(folder, f))).ToArray();
        if (missing.Length > 0)
        {
            throw new InvalidDataException($"{folder}: not a complete ONNX model folder, missing {string.Join(", ", missing)}");
        }

        string indexPath = Path.Combine(folder, "model_index.json");
        try
        {
            // Only checked (components are found by their folders): a model_index.json that is not a pipeline index makes the
            // folder suspect, so it is refused with the parser's message (file and field) instead of being served.
            if (File.Exists(indexPath)) ModelIndex.Load(indexPath);
        }
        catch (DiffusersConfigException e)
        {
            throw new InvalidDataException($"{folder}: {e.Message}", e);
        }

        string id = Path.GetFileName(folder.TrimEnd(Path.DirectorySeparatorChar));
        string manifestPath = Path.Combine(folder, OnnxModelManifest.FileName);
        var manifest = OnnxModelManifest.TryRead(folder); // a broken manifest throws, naming the file and field
        string name = manifest?.Name ?? id;
        string? description = manifest?.Description;
        string? family = manifest?.Family;
        int? width = manifest?.Width;
        int? height = manifest?.Height;
        double? scaling = manifest?.VaeScalingFactor;

        // Optimum copies each part's diffusers config.json beside its model.onnx.
        string vaeConfig = Path.Combine(folder, "vae_decoder", "config.json");
        int vaeScaleFactor = 8;
        if (File.Exists(vaeConfig))
        {
            using var config = ParseJson(vaeConfig);
            scaling ??= OptionalDouble(config.RootElement, "scaling_factor", vaeConfig);
            if (config.RootElement.TryGetProperty("block_out_channels", out var blocks) && blocks.ValueKind == JsonValueKind.Array && blocks.GetArrayLength() is > 0 and <= 5)
            {
                vaeScaleFactor = 1 << (blocks.GetArrayLength() - 1);
            }
        }

        // The exporter (and Optimum) keep each part's diffusers config.json: the UNet's sample_size gives the native
        // resolution; the family comes from the architecture (ModelFamily: gelu text encoder or linear projections = SD2),
        // never from a width.
        string unetConfigPath = Path.Combine(folder, "unet", "config.json");
        string textConfigPath = Path.Combine(folder, "text_encoder", "config.json");
        UNetConfig? unetConfig = LoadConfig(unetConfigPath, UNetConfig.Load);
        ClipTextConfig? textConfig = LoadConfig(textConfigPath, ClipTextConfig.Load);
        if (unetConfig is not null)
        {
            width ??= Math.Max(8, unetConfig.SampleSize * vaeScaleFactor / 8 * 8);
            height ??= Math.Max(8, unetConfig.SampleSize * vaeScaleFactor / 8 * 8);
        }

        family ??= ModelFamily.Detect(unetConfig, textConfig);

        // Parsed once here (Core's parser) and kept with the model for its sessions.
        string schedulerPath = Path.Combine(folder, "scheduler", "scheduler_config.json");
        var scheduler = LoadConfig(schedulerPath, SchedulerConfig.Load);

        // A folder without the manifest and configs (made by another tool): read what the graphs say, assume the rest,
        // and say which is which in one line.
        var inferred = new List<string>();
        if (manifest is null && (unetConfig is null || textConfig is null || scheduler is null || scaling is null))
        {
            if (family is null)
            {
                var text = ReadGraph(Path.Combine(folder, "text_encoder", "model.onnx"), GraphInference.ReadTextEncoder);
                if (GraphInference.Family(text) is { } decided)
                {
                    family = decided.Family;
                    inferred.Add($"family {family} from the {decided.Reason}");
                }
                else
                {
                    family = scheduler?.PredictionType == "v_prediction" ? ModelFamily.Sd2 : ModelFamily.Sd1;
                    inferred.Add($"family {family} (assumed: the text encoder graph, {text}, does not tell SD1 from SD2; add text_encoder/config.json)");
                }
            }

            if (!File.Exists(vaeConfig))
            {
                int? factor = ReadGraph(Path.Combine(folder, "vae_decoder", "model.onnx"), GraphInference.ReadVaeScaleFactor);
                vaeScaleFactor = factor ?? 8;
                inferred.Add(factor is null
                    ? "VAE scale factor 8 (assumed: the vae_decoder graph has no upsampling nodes to count)"
                    : $"VAE scale factor {factor} (vae_decoder: {System.Numerics.BitOperations.Log2((uint)factor.Value)} upsampling nodes)");
            }

            if (unetConfig is null)
            {
                var unet = ReadGraph(Path.Combine(folder, "unet", "model.onnx"), GraphInference.ReadUnet);
                inferred.Add(unet.LatentChannels is { } c ? $"{c} latent channels (unet sample)" : "4 latent channels (assumed: unet sample channels are symbolic)");
                if (unet.CrossAttentionDim is { } d) inferred.Add($"cross-attention {d} wide (unet encoder_hidden_states)");
                if (unet.LatentHeight is { } lh && unet.LatentWidth is { } lw)
                {
                    height ??= lh * vaeScaleFactor;
                    width ??= lw * vaeScaleFactor;
                    inferred.Add($"native size {width}x{height} (unet sample fixed at {lw}x{lh})");
                }
                else if (width is null || height is null)
                {
                    width ??= 512;
                    height ??= 512;
                    inferred.Add($"native size {width}x{height} (assumed: unet sample size is symbolic)");
                }
            }

            if (scheduler is null)
            {
                var basis = family == ModelFamily.Sd2 ? ReferenceModels.Sd21Base : ReferenceModels.Sd15;
                scheduler = basis.Scheduler with { File = schedulerPath };
                inferred.Add($"prediction {scheduler.PredictionType} (assumed: v-prediction cannot be read from graphs; a v-model needs scheduler/scheduler_config.json) "
                    + $"with {scheduler.ClassName} {scheduler.BetaSchedule} {scheduler.BetaStart.ToString(System.Globalization.CultureInfo.InvariantCulture)}..{scheduler.BetaEnd.ToString(System.Globalization.CultureInfo.InvariantCulture)}, {scheduler.NumTrainTimesteps} steps ({basis.Source}'s scheduler)");
            }

            if (scaling is null)
            {
                inferred.Add($"VAE scaling factor {DefaultVaeScalingFactor.ToString(System.Globalization.CultureInfo.InvariantCulture)} (assumed: no vae_decoder/config.json)");
            }
        }

        if (scheduler is null)
        {
            throw new InvalidDataException($"{schedulerPath}: missing");
        }

        string predictionType = scheduler.PredictionType;

        family ??= predictionType == "v_prediction" ? "sd2" : "sd1";
        int native = family == "sd2" && predictionType == "v_prediction" ? 768 : 512;
        width ??= native;
        height ??= native;
        if (width % 8 != 0 || height % 8 != 0 || width <= 0 || height <= 0)
        {
            throw new InvalidDataException($"{manifestPath}: width/height must be positive multiples of 8, got {width}x{height}");
        }

        if (manifest?.StepCache is not null && !File.Exists(Path.Combine(folder, ManifestStepCache.ShallowFolder, "model.onnx")))
        {
            throw new InvalidDataException($"{manifestPath}: stepCache is recorded but {Path.Combine(folder, ManifestStepCache.ShallowFolder, "model.onnx")} is missing; export the model again");
        }

        bool hasEncoder = File.Exists(Path.Combine(folder, "vae_encoder", "model.onnx"));
        var info = new ModelInfo(id, name, folder, family, width.Value, height.Value, hasEncoder, description);
        string? note = inferred.Count == 0 ? null : $"{folder}: no manifest or configs for some parts; defaults inferred: {string.Join("; ", inferred)}";
        return new OnnxModelFolder(info, scaling ?? DefaultVaeScalingFactor, vaeScaleFactor)
        {
            Scheduler = scheduler,
            InferredDefaults = note,
            ExportProfile = manifest?.OptimizeOrPlain ?? "plain",
            StepCache = manifest?.StepCache,
            Precision = manifest?.PrecisionOrDerived ?? "fp32",
        };
    }

    /// <summary>A graph read through <see cref="GraphInference"/>; an unreadable file names itself.</summary>
    private static T ReadGraph<T>(string path, Func<string, T> read)
    {
        try
        {
            return read(path);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: truncated ONNX file", e);
        }
    }

    /// <summary>A diffusers config through Core's parser, or null when the file is absent; a broken one names file and field.</summary>
    private static T? LoadConfig<T>(string path, Func<string, T> load) where T : class
    {
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return load(path);
        }
        catch (DiffusersConfigException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
    }

    private static JsonDocument ParseJson(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path}: invalid JSON ({ex.Message})", ex);
        }
    }

    private static double? OptionalDouble(JsonElement root, string key, string file)
    {
        if (!root.TryGetProperty(key, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.Number
            ? e.GetDouble()
            : throw new InvalidDataException($"{file}: '{key}' must be a number, found {e.GetRawText()}");
    }
}

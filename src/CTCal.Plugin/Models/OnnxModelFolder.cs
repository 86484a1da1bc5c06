using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;

namespace CTCal.Plugin.Models;

/// <summary>
/// A Stable Diffusion 1.x/2.x ONNX folder in the Optimum/OnnxStack layout: <c>tokenizer/</c>,
/// <c>text_encoder/model.onnx</c>, <c>unet/model.onnx</c>, <c>vae_decoder/model.onnx</c>, optional
/// <c>vae_encoder/model.onnx</c>, <c>scheduler/scheduler_config.json</c>, <c>model_index.json</c>, and optionally a
/// <c>ctcal_manifest.json</c> (<see cref="OnnxModelManifest"/>, read through Core: the exporter writes the same record).
/// </summary>
/// <param name="VaeScaleFactor">Pixels per latent cell: 2^(VAE blocks - 1), 8 for every SD 1.x/2.x VAE.</param>
internal sealed record OnnxModelFolder(ModelInfo Info, double VaeScalingFactor, int VaeScaleFactor = 8)
{
    /// <summary>Files a folder must have, relative to it.</summary>
    public static readonly string[] RequiredFiles =
    {
        "model_index.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "text_encoder/model.onnx",
        "unet/model.onnx",
        "vae_decoder/model.onnx",
        "scheduler/scheduler_config.json",
    };

    public const double DefaultVaeScalingFactor = 0.18215;

    public string Folder => Info.Folder;

    public string TokenizerFolder => Path.Combine(Folder, "tokenizer");

    public string TextEncoderPath => Path.Combine(Folder, "text_encoder", "model.onnx");

    public string UnetPath => Path.Combine(Folder, "unet", "model.onnx");

    public string VaeDecoderPath => Path.Combine(Folder, "vae_decoder", "model.onnx");

    public string? VaeEncoderPath => Info.HasVaeEncoder ? Path.Combine(Folder, "vae_encoder", "model.onnx") : null;

    public string SchedulerConfigPath => Path.Combine(Folder, "scheduler", "scheduler_config.json");

    /// <summary>The scheduler config as read when the folder was loaded (null only for records made by hand in tests).</summary>
    public SchedulerConfig? Scheduler { get; init; }

    /// <summary>Whether <paramref name="folder"/> looks like a model folder at all (so missing parts are worth reporting).</summary>
    public static bool LooksLikeModel(string folder) =>
        File.Exists(Path.Combine(folder, "model_index.json")) || Directory.Exists(Path.Combine(folder, "unet"));

    /// <summary>Reads a model folder; throws <see cref="InvalidDataException"/> naming the missing file or bad field.</summary>
    public static OnnxModelFolder Load(string folder)
    {
        folder = Path.GetFullPath(folder);
        var missing = RequiredFiles.Where(f => !File.Exists(Path.Combine(folder, f))).ToArray();
        if (missing.Length > 0)
        {
            throw new InvalidDataException($"{folder}: not a complete ONNX model folder, missing {string.Join(", ", missing)}");
        }

        try
        {
            // Only checked (components are found by their folders): a model_index.json that is not a pipeline index makes the
            // folder suspect, so it is refused with the parser's message (file and field) instead of being served.
            ModelIndex.Load(Path.Combine(folder, "model_index.json"));
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
        var scheduler = LoadConfig(Path.Combine(folder, "scheduler", "scheduler_config.json"), SchedulerConfig.Load)!;
        string predictionType = scheduler.PredictionType;

        family ??= predictionType == "v_prediction" ? "sd2" : "sd1";
        int native = family == "sd2" && predictionType == "v_prediction" ? 768 : 512;
        width ??= native;
        height ??= native;
        if (width % 8 != 0 || height % 8 != 0 || width <= 0 || height <= 0)
        {
            throw new InvalidDataException($"{manifestPath}: width/height must be positive multiples of 8, got {width}x{height}");
        }

        bool hasEncoder = File.Exists(Path.Combine(folder, "vae_encoder", "model.onnx"));
        var info = new ModelInfo(id, name, folder, family, width.Value, height.Value, hasEncoder, description);
        return new OnnxModelFolder(info, scaling ?? DefaultVaeScalingFactor, vaeScaleFactor) { Scheduler = scheduler };
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

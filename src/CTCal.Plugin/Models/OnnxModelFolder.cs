using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.Diffusers;

namespace CTCal.Plugin.Models;

/// <summary>
/// A Stable Diffusion 1.x/2.x ONNX folder in the Optimum/OnnxStack layout: <c>tokenizer/</c>,
/// <c>text_encoder/model.onnx</c>, <c>unet/model.onnx</c>, <c>vae_decoder/model.onnx</c>, optional
/// <c>vae_encoder/model.onnx</c>, <c>scheduler/scheduler_config.json</c>, <c>model_index.json</c>, and optionally a
/// <c>ctcal_manifest.json</c> (name, family, width, height, description, vaeScalingFactor).
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
        string name = id;
        string? description = null;
        string? family = null;
        int? width = null;
        int? height = null;
        double? scaling = null;

        string manifestPath = Path.Combine(folder, "ctcal_manifest.json");
        if (File.Exists(manifestPath))
        {
            using var manifest = ParseJson(manifestPath);
            var root = manifest.RootElement;
            name = OptionalString(root, "name", manifestPath) ?? name;
            description = OptionalString(root, "description", manifestPath);
            family = OptionalString(root, "family", manifestPath);
            width = OptionalInt(root, "width", manifestPath);
            height = OptionalInt(root, "height", manifestPath);
            scaling = OptionalDouble(root, "vaeScalingFactor", manifestPath);
        }

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
        // resolution, the text encoder's hidden_size tells SD2 (OpenCLIP ViT-H, 1024) from SD1 (CLIP ViT-L, 768).
        string unetConfig = Path.Combine(folder, "unet", "config.json");
        if (File.Exists(unetConfig))
        {
            using var config = ParseJson(unetConfig);
            if (OptionalInt(config.RootElement, "sample_size", unetConfig) is int sampleSize)
            {
                width ??= Math.Max(8, sampleSize * vaeScaleFactor / 8 * 8);
                height ??= Math.Max(8, sampleSize * vaeScaleFactor / 8 * 8);
            }
        }

        string textConfig = Path.Combine(folder, "text_encoder", "config.json");
        if (family is null && File.Exists(textConfig))
        {
            using var config = ParseJson(textConfig);
            if (OptionalInt(config.RootElement, "hidden_size", textConfig) is int hidden)
            {
                family = hidden == 1024 ? "sd2" : "sd1";
            }
        }

        string predictionType = "epsilon";
        using (var scheduler = ParseJson(Path.Combine(folder, "scheduler", "scheduler_config.json")))
        {
            predictionType = OptionalString(scheduler.RootElement, "prediction_type", "scheduler_config.json") ?? predictionType;
        }

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
        return new OnnxModelFolder(info, scaling ?? DefaultVaeScalingFactor, vaeScaleFactor);
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

    private static string? OptionalString(JsonElement root, string key, string file)
    {
        if (!root.TryGetProperty(key, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.String
            ? e.GetString()
            : throw new InvalidDataException($"{file}: '{key}' must be a string, found {e.ValueKind}");
    }

    private static int? OptionalInt(JsonElement root, string key, string file)
    {
        if (!root.TryGetProperty(key, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v)
            ? v
            : throw new InvalidDataException($"{file}: '{key}' must be an integer, found {e.GetRawText()}");
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

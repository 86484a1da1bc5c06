using System.Globalization;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// LoRA weight files in the diffusers/peft layout: <c>unet.{module path}.lora_A.weight</c> [rank, in],
/// <c>unet.{module path}.lora_B.weight</c> [out, rank], the same under <c>text_encoder.</c>. Alpha is not stored as tensors;
/// the safetensors metadata records it: <c>lora_adapter_metadata</c> (peft LoraConfig JSON: r, lora_alpha, lora_dropout,
/// target_modules — what diffusers reads back), plus <c>ctcal.lora_rank</c> and <c>ctcal.lora_alpha</c>. A file without
/// alpha metadata is read with alpha = rank (scale 1), peft's default for diffusers files.
/// </summary>
public static class LoraFile
{
    public const string DefaultName = "pytorch_lora_weights.safetensors";

    public static void Save(string path, IReadOnlyList<LoraAdapters> adapters)
    {
        if (adapters.Count == 0) throw new ArgumentException("no LoRA adapters to save", nameof(adapters));
        var options = adapters[0].Options;
        var config = new Dictionary<string, object>
        {
            ["r"] = options.Rank,
            ["lora_alpha"] = options.EffectiveAlpha,
            ["lora_dropout"] = options.Dropout,
            ["target_modules"] = adapters.SelectMany(a => a.Prefix == "unet" ? LoraOptions.UNetTargets : LoraOptions.TextEncoderTargets).ToArray(),
        };
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["lora_adapter_metadata"] = JsonSerializer.Serialize(config),
            ["ctcal.lora_rank"] = options.Rank.ToString(CultureInfo.InvariantCulture),
            ["ctcal.lora_alpha"] = options.EffectiveAlpha.ToString("R", CultureInfo.InvariantCulture),
        };
        TensorFile.Save(path, adapters.SelectMany(a => a.StateEntries()), metadata);
    }

    /// <summary>Reads a LoRA file: tensors by key (caller disposes) and the rank and alpha it was trained with.</summary>
    public static (Dictionary<string, Tensor> Tensors, int Rank, double Alpha) Load(string path)
    {
        var tensors = TensorFile.Load(path, out var metadata);
        var firstA = tensors.FirstOrDefault(kv => kv.Key.EndsWith(".lora_A.weight", StringComparison.Ordinal));
        if (firstA.Value is null)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new InvalidDataException($"{path}: no '*.lora_A.weight' tensor; not a LoRA file");
        }
        int rank = (int)firstA.Value.shape[0];
        double alpha = rank;
        if (metadata.TryGetValue("ctcal.lora_alpha", out var a) && double.TryParse(a, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed))
            alpha = parsed;
        else if (metadata.TryGetValue("lora_adapter_metadata", out var json))
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.TryGetProperty("lora_alpha", out var la) && la.TryGetDouble(out var v)) alpha = v;
        }
        foreach (var (key, value) in tensors)
            if (key.EndsWith(".lora_A.weight", StringComparison.Ordinal) && value.shape[0] != rank)
                throw new InvalidDataException($"{path}: '{key}' has rank {value.shape[0]}, but '{firstA.Key}' has rank {rank}");
        return (tensors, rank, alpha);
    }
}

using System.Globalization;
using System.Text.Json;
using CTCal.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// LoRA weight files, keys through Core's <see cref="LoraKeys"/>; written by default in the diffusers/peft layout: <c>unet.{module path}.lora_A.weight</c> [rank, in],
/// <c>unet.{module path}.lora_B.weight</c> [out, rank], the same under <c>text_encoder.</c>. Alpha is not stored as tensors;
/// the safetensors metadata records it: <c>lora_adapter_metadata</c> (peft LoraConfig JSON: r, lora_alpha, lora_dropout,
/// target_modules — what diffusers reads back), plus <c>ctcal.lora_rank</c> and <c>ctcal.lora_alpha</c>. A file without
/// alpha metadata is read with alpha = rank (scale 1), peft's default for diffusers files.
/// </summary>
public static class LoraFile
{
    public const string DefaultName = "pytorch_lora_weights.safetensors";

    /// <summary>
    /// Writes the adapters in <paramref name="format"/> (keys from <see cref="LoraKeys"/>; default: the options' <see cref="LoraOptions.Format"/>, peft unless asked). Kohya files
    /// also hold a scalar <c>.alpha</c> tensor per module, as kohya tools expect; the metadata is the same in every spelling.
    /// </summary>
    public static void Save(string path, IReadOnlyList<LoraAdapters> adapters, LoraSpelling? format = null)
    {
        if (adapters.Count == 0) throw new ArgumentException("no LoRA adapters to save", nameof(adapters));
        var options = adapters[0].Options;
        var spelling = format ?? options.Format;
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
        // Kohya files carry the (one) alpha as a scalar tensor beside every module.
        using var alpha = spelling == LoraSpelling.Kohya ? torch.tensor((float)options.EffectiveAlpha) : null;
        var entries = new List<(string, Tensor)>();
        foreach (var a in adapters)
        foreach (var layer in a.Layers)
        {
            entries.Add((LoraKeys.Format(a.Prefix, layer.Path, LoraPart.Down, spelling), layer.A));
            entries.Add((LoraKeys.Format(a.Prefix, layer.Path, LoraPart.Up, spelling), layer.B));
            if (alpha is not null) entries.Add((LoraKeys.Format(a.Prefix, layer.Path, LoraPart.Alpha, spelling), alpha));
        }
        TensorFile.Save(path, entries, metadata);
    }

    /// <summary>
    /// Reads a LoRA file in any spelling of <see cref="LoraKeys"/>: tensors keyed in peft spelling (caller disposes) and the
    /// rank and alpha it was trained with. Kohya keys are mapped back through <paramref name="weightNames"/> (a component's
    /// weight names); per-module alpha tensors must all agree (one alpha per run) and then override the metadata.
    /// </summary>
    public static (Dictionary<string, Tensor> Tensors, int Rank, double Alpha) Load(string path, Func<string, IEnumerable<string>>? weightNames = null)
    {
        var raw = TensorFile.Load(path, out var metadata);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var alphaValues = new List<(string Key, double Value)>();
        try
        {
            var resolvers = new Dictionary<string, LoraModuleResolver>(StringComparer.Ordinal);
            foreach (var (key, value) in raw)
            {
                var parsed = LoraKeys.TryParse(key, out var k) ? k
                    : throw new InvalidDataException($"{path}: tensor '{key}' is not a LoRA key");
                string module = parsed.Module;
                if (parsed.Spelling == LoraSpelling.Kohya)
                {
                    if (!resolvers.TryGetValue(parsed.Component, out var resolver))
                        resolvers[parsed.Component] = resolver = new LoraModuleResolver(weightNames?.Invoke(parsed.Component)
                            ?? throw new InvalidDataException($"{path}: kohya LoRA key '{key}' needs the model's {parsed.Component} weight names"));
                    try
                    {
                        module = resolver.Resolve(parsed);
                    }
                    catch (LoraKeyException e)
                    {
                        throw new InvalidDataException($"{path}: {e.Message}", e);
                    }
                }
                if (parsed.Part == LoraPart.Alpha)
                {
                    if (value.numel() != 1) throw new InvalidDataException($"{path}: '{key}' must be a scalar");
                    using (var f64 = value.to_type(ScalarType.Float64)) alphaValues.Add((key, f64.item<double>()));
                    value.Dispose();
                    continue;
                }
                if (!tensors.TryAdd(LoraKeys.Format(parsed.Component, module, parsed.Part, LoraSpelling.Peft), value))
                    throw new InvalidDataException($"{path}: '{key}' names a module part that another key already holds");
            }
        }
        catch
        {
            foreach (var t in raw.Values) t.Dispose();
            throw;
        }
        void Fail(string message)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new InvalidDataException(message);
        }
        var firstA = tensors.FirstOrDefault(kv => LoraKeys.Parse(kv.Key).Part == LoraPart.Down);
        if (firstA.Value is null) Fail($"{path}: no LoRA down tensor ('*.lora_A.weight', '*.lora.down.weight' or kohya '*.lora_down.weight'); not a LoRA file");
        int rank = (int)firstA.Value!.shape[0];
        double alpha = rank;
        if (metadata.TryGetValue("ctcal.lora_alpha", out var a) && double.TryParse(a, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsedAlpha))
            alpha = parsedAlpha;
        else if (metadata.TryGetValue("lora_adapter_metadata", out var json))
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.TryGetProperty("lora_alpha", out var la) && la.TryGetDouble(out var v)) alpha = v;
        }
        if (alphaValues.Count > 0)
        {
            var (firstKey, firstValue) = alphaValues[0];
            foreach (var (key, value) in alphaValues)
                if (value != firstValue) Fail($"{path}: '{key}' = {value} but '{firstKey}' = {firstValue}; the trainer merges one alpha per file");
            alpha = firstValue;
        }
        foreach (var (key, value) in tensors)
            if (LoraKeys.Parse(key).Part == LoraPart.Down && value.shape[0] != rank)
                Fail($"{path}: '{key}' has rank {value.shape[0]}, but '{firstA.Key}' has rank {rank}");
        if (rank <= 0) Fail($"{path}: '{firstA.Key}' has rank {rank}; a LoRA needs rank >= 1");
        if (!(alpha > 0) || double.IsInfinity(alpha)) Fail($"{path}: LoRA alpha {alpha} is not a positive number");
        return (tensors, rank, alpha);
    }
}

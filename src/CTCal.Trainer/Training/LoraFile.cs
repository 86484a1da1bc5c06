using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// LoRA weight files, keys through Core's <see cref="LoraKeys"/>; written by default in the diffusers/peft layout: <c>unet.{module path}.lora_A.weight</c> [rank, in],
/// <c>unet.{module path}.lora_B.weight</c> [out, rank], the same under <c>text_encoder.</c>. Alpha is not stored as tensors;
/// the safetensors metadata records it (<see cref="LoraFileLayout.Metadata"/>: the peft LoraConfig JSON that diffusers reads
/// back, plus <c>ctcal.lora_rank</c> and <c>ctcal.lora_alpha</c>). A file without alpha metadata is read with alpha = rank
/// (scale 1), peft's default for diffusers files.
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
        var metadata = LoraFileLayout.Metadata(options.Rank, options.EffectiveAlpha, options.Dropout,
            adapters.SelectMany(a => a.Prefix switch
            {
                LoraKeys.UNet => LoraOptions.UNetTargets,
                LoraKeys.Transformer => LoraOptions.TransformerTargets,
                _ => LoraOptions.TextEncoderTargets,
            }).ToArray());
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
    /// Reads a LoRA file in any spelling of <see cref="LoraKeys"/> (its layout through Core's <see cref="LoraFileLayout"/>, the
    /// one reader of the format): tensors keyed in peft spelling (caller disposes) and the rank and alpha it was trained with.
    /// Kohya keys are mapped back through <paramref name="weightNames"/> (a component's weight names). The trainer merges one
    /// rank and one alpha per file: modules that disagree are refused.
    /// </summary>
    public static (Dictionary<string, Tensor> Tensors, int Rank, double Alpha) Load(string path, Func<string, IEnumerable<string>>? weightNames = null)
    {
        LoraFileLayout layout;
        using (var file = SafetensorsFile.Open(path)) layout = LoraFileLayout.Read(file, path, weightNames);
        if (layout.Problems.Count > 0) throw new InvalidDataException(string.Join(Environment.NewLine, layout.Problems));
        var first = layout.Modules[0];
        double alpha = first.EffectiveAlpha(layout.MetadataAlpha);
        foreach (var m in layout.Modules)
        {
            if (m.Rank != first.Rank)
                throw new InvalidDataException($"{path}: '{m.DownKey}' has rank {m.Rank}, but '{first.DownKey}' has rank {first.Rank}");
            if (m.EffectiveAlpha(layout.MetadataAlpha) != alpha)
                throw new InvalidDataException($"{path}: '{m.DownKey}' has alpha {m.EffectiveAlpha(layout.MetadataAlpha)} but '{first.DownKey}' has alpha {alpha}; the trainer merges one alpha per file");
        }

        var raw = TensorFile.Load(path, out _);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var m in layout.Modules)
        {
            tensors[LoraKeys.Format(m.Component, m.Module, LoraPart.Down, LoraSpelling.Peft)] = raw[m.DownKey];
            tensors[LoraKeys.Format(m.Component, m.Module, LoraPart.Up, LoraSpelling.Peft)] = raw[m.UpKey];
        }

        var kept = layout.Modules.SelectMany(m => new[] { m.DownKey, m.UpKey }).ToHashSet(StringComparer.Ordinal);
        foreach (var (key, value) in raw)
            if (!kept.Contains(key)) value.Dispose(); // alpha scalars: read through the layout
        return (tensors, first.Rank, alpha);
    }
}

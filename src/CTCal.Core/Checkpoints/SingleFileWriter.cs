using CTCal.Core.Safetensors;
using CTCal.Core.Weights;

namespace CTCal.Core.Checkpoints;

/// <summary>
/// The inverse of <see cref="SingleFileCheckpoint"/>: writes the tensors of a diffusers model's components as one
/// original-format checkpoint through the same <see cref="CheckpointKeyMap"/> (linear VAE attention weights back to 1x1
/// convs, OpenCLIP q/k/v parts fused in order), each tensor in its stored dtype, byte for byte. Diffusers tensors the
/// original format has no place for (the text encoder's <c>position_ids</c> for OpenCLIP) are left out.
/// </summary>
public static class SingleFileWriter
{
    /// <summary>
    /// The checkpoint's entries for <paramref name="components"/> (unet, vae, text_encoder -> their tensors), sorted by key.
    /// The data callbacks read from the sources: keep them open until the entries are written.
    /// </summary>
    /// <exception cref="InvalidOperationException">a tensor the map has no row for, or fused parts that disagree (names them).</exception>
    public static List<SafetensorsWriteEntry> Entries(CheckpointKeyMap map, IReadOnlyDictionary<string, TensorSource> components)
    {
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(components);
        var byKey = new SortedDictionary<string, List<(KeyRule Rule, TensorSource Source, TensorSourceEntry Entry)>>(StringComparer.Ordinal);
        foreach (var (component, source) in components)
        {
            foreach (var entry in source.Tensors)
            {
                if (map.ToOriginal(component, entry.Name) is not { } original)
                {
                    if (entry.Name.EndsWith(".position_ids", StringComparison.Ordinal)) continue;
                    throw new InvalidOperationException($"{component} tensor '{entry.Name}' ({source.Path}) has no original key in the {map.Family} key map");
                }
                if (!byKey.TryGetValue(original.Key, out var parts)) byKey[original.Key] = parts = [];
                parts.Add((original.Rule, source, entry));
            }
        }
        var result = new List<SafetensorsWriteEntry>();
        foreach (var (key, parts) in byKey)
        {
            parts.Sort((a, b) => a.Rule.Part.CompareTo(b.Rule.Part));
            var first = parts[0];
            long[] shape = CheckpointKeyMap.OriginalShape(first.Rule, first.Entry.Shape);
            if (first.Rule.Transform == KeyTransform.FusedPart)
            {
                bool complete = parts.Count == KeyRule.FusedParts && parts.Select((p, i) => p.Rule.Part == i).All(b => b)
                    && parts.All(p => p.Entry.Shape.SequenceEqual(first.Entry.Shape) && p.Entry.DType == first.Entry.DType);
                if (!complete)
                    throw new InvalidOperationException($"'{key}' fuses {string.Join(", ", parts.Select(p => p.Entry.Name))}, which are not three parts of one shape and dtype");
            }
            else if (parts.Count != 1)
            {
                throw new InvalidOperationException($"'{key}' would be written from {string.Join(", ", parts.Select(p => p.Entry.Name))}");
            }
            result.Add(new SafetensorsWriteEntry(key, first.Entry.DType, shape, stream =>
            {
                foreach (var p in parts) p.Source.CopyBytesTo(p.Entry.Name, stream);
            }));
        }
        return result;
    }

    /// <summary>
    /// Writes <see cref="Entries"/> plus <paramref name="extra"/> (e.g. an EMA copy or schedule buffers) to
    /// <paramref name="path"/> atomically.
    /// </summary>
    public static void Write(string path, CheckpointKeyMap map, IReadOnlyDictionary<string, TensorSource> components,
        IEnumerable<SafetensorsWriteEntry>? extra = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = Entries(map, components);
        if (extra is not null) entries.AddRange(extra);
        SafetensorsWriter.Write(path, entries, metadata);
    }
}

using System.Text.Json;
using CTCal.Core.Models;

namespace CTCal.Core.Weights;

/// <summary>
/// Where a diffusers component folder keeps its weights: <c>{stem}[.variant].safetensors</c> or its sharded
/// <c>{stem}[.variant].safetensors.index.json</c> (stems <c>diffusion_pytorch_model</c> and <c>model</c>), and which shard
/// files an index names. Pickle files are never chosen.
/// </summary>
public static class ComponentWeightsFile
{
    /// <summary>The weight-file stems diffusers and transformers use.</summary>
    public static readonly IReadOnlyList<string> Stems = ["diffusion_pytorch_model", "model"];

    /// <summary>
    /// The candidate file names in order of preference. Without <paramref name="variant"/> the plain file first, then
    /// <c>.fp16</c> (used when it is the only one); with a variant that variant first, the plain file the fallback. Each
    /// single file is followed by its sharded index.
    /// </summary>
    public static IReadOnlyList<string> Candidates(string? variant = null, IEnumerable<string>? stems = null)
    {
        var names = new List<string>();
        foreach (string stem in stems ?? Stems)
        {
            string[] files = variant is null
                ? [$"{stem}.safetensors", $"{stem}.fp16.safetensors"]
                : [$"{stem}.{variant}.safetensors", $"{stem}.safetensors"];
            foreach (string f in files) names.AddRange([f, f + ".index.json"]);
        }
        return names;
    }

    /// <summary>The weights file (or shard index) of <paramref name="componentFolder"/>, or null when there is none.</summary>
    public static string? Find(string componentFolder, string? variant = null, IEnumerable<string>? stems = null)
    {
        ArgumentNullException.ThrowIfNull(componentFolder);
        return Candidates(variant, stems).Select(n => Path.Combine(componentFolder, n)).FirstOrDefault(File.Exists);
    }

    /// <summary><see cref="Find"/>, or an exception that lists what was expected (and explains a pickle-only folder).</summary>
    /// <exception cref="ModelFolderException">no safetensors weights.</exception>
    public static string Resolve(string componentFolder, string? variant = null, IEnumerable<string>? stems = null)
    {
        if (Find(componentFolder, variant, stems) is { } found) return found;
        var pickles = Directory.Exists(componentFolder)
            ? Directory.EnumerateFiles(componentFolder).Where(WeightFiles.IsPickle).Order(StringComparer.Ordinal).ToList()
            : [];
        if (pickles.Count > 0) throw new ModelFolderException(componentFolder, pickles.Select(WeightFiles.PickleRefusal).ToList());
        var expected = Candidates(variant, stems).Where(n => !n.EndsWith(".index.json", StringComparison.Ordinal)).Take(4);
        throw new ModelFolderException(componentFolder, [$"no weights file; expected one of {string.Join(", ", expected)} (or its .index.json)"]);
    }

    /// <summary>True when <paramref name="path"/> names a sharded checkpoint's index (<c>*.safetensors.index.json</c>).</summary>
    public static bool IsShardIndex(string path) => path.EndsWith(".safetensors.index.json", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The shard files of a <c>*.safetensors.index.json</c> (its <c>weight_map</c> values, each once, in first-use order),
    /// as full paths that must lie beside the index.
    /// </summary>
    /// <exception cref="ModelFolderException">unreadable JSON, no weight_map, or a shard name that is not a plain file name.</exception>
    public static IReadOnlyList<string> ReadShardIndex(string indexPath)
    {
        ArgumentNullException.ThrowIfNull(indexPath);
        string root = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelFolderException(indexPath, ["has no \"weight_map\" object"]);
            var shards = new List<string>();
            foreach (var entry in map.EnumerateObject())
            {
                string shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : "";
                if (shard.Length == 0) throw new ModelFolderException(indexPath, [$"weight_map[\"{entry.Name}\"] is not a file name"]);
                string resolved = PathGuard.ResolveInside(root, shard);
                if (!shards.Contains(resolved)) shards.Add(resolved);
            }
            if (shards.Count == 0) throw new ModelFolderException(indexPath, ["\"weight_map\" is empty"]);
            return shards;
        }
        catch (JsonException e)
        {
            throw new ModelFolderException(indexPath, [$"is not valid JSON ({e.Message})"]);
        }
        catch (IOException e)
        {
            throw new ModelFolderException(indexPath, [$"cannot be read ({e.Message})"]);
        }
    }
}

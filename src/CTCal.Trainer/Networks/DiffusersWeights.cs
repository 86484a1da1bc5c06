using System.Text;
using System.Text.Json;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// Loads and saves model weights in diffusers' safetensors layout. Module parameter names are the file's tensor names,
/// so there is no renaming: a load is a strict name-for-name, shape-for-shape copy. Pickle checkpoints are refused.
/// </summary>
public static class DiffusersWeights
{
    /// <summary>
    /// Copies the tensors of <paramref name="path"/> into <paramref name="module"/>'s parameters and buffers (converting
    /// F32/F16/BF16 to each parameter's dtype and device). <paramref name="path"/> is a <c>.safetensors</c> file, a sharded
    /// checkpoint's <c>*.safetensors.index.json</c>, or a component folder (see <see cref="ResolveWeightsFile"/>).
    /// Nothing is copied unless every key matches.
    /// </summary>
    /// <param name="ignorableKeys">File keys that may be present without a matching parameter (e.g. CLIP's old <c>position_ids</c> buffer).</param>
    /// <exception cref="StateDictMismatchException">missing, unexpected or shape-mismatched keys (all listed by name).</exception>
    /// <exception cref="ModelFolderException">a pickle checkpoint, or no weights file in the folder.</exception>
    /// <exception cref="SafetensorsException">a malformed file.</exception>
    public static void Load(nn.Module module, string path, IEnumerable<string>? ignorableKeys = null, string? variant = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        string file = Directory.Exists(path) ? ResolveWeightsFile(path, variant) : path;
        if (WeightFiles.IsPickle(file)) throw new ModelFolderException(file, [WeightFiles.PickleRefusal(file)]);
        if (!File.Exists(file)) throw new FileNotFoundException($"weights file '{file}' does not exist", file);

        var shards = file.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase) ? ReadShardIndex(file) : [file];
        var ignorable = new HashSet<string>(ignorableKeys ?? [], StringComparer.Ordinal);
        var opened = new List<SafetensorsFile>();
        try
        {
            foreach (string shard in shards)
            {
                WeightFiles.EnsureSafetensors(shard);
                opened.Add(SafetensorsFile.Open(shard));
            }
            var sources = new Dictionary<string, (SafetensorsFile File, SafetensorsTensorInfo Info)>(StringComparer.Ordinal);
            foreach (var f in opened)
                foreach (var info in f.Tensors)
                    if (!sources.TryAdd(info.Name, (f, info)))
                        throw new SafetensorsException(f.Path, info.Name, $"also stored in {sources[info.Name].File.Path}");

            var targets = module.state_dict();
            var missing = targets.Keys.Where(k => !sources.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
            var unexpected = sources.Keys.Where(k => !targets.ContainsKey(k) && !ignorable.Contains(k)).Order(StringComparer.Ordinal).ToList();
            var mismatched = new List<string>();
            foreach (var (name, target) in targets)
            {
                if (!sources.TryGetValue(name, out var source)) continue;
                if (!source.Info.Shape.SequenceEqual(target.shape))
                    mismatched.Add($"{name}: file [{string.Join(", ", source.Info.Shape)}], model [{string.Join(", ", target.shape)}]");
                else if (!source.Info.DType.IsFloatingPoint() && target.is_floating_point())
                    mismatched.Add($"{name}: file dtype {source.Info.DType.ToHeaderName()} is not floating point");
            }
            if (missing.Count + unexpected.Count + mismatched.Count > 0)
                throw new StateDictMismatchException(file, module.GetName(), missing, unexpected, mismatched);

            using var _ = no_grad();
            foreach (var (name, target) in targets)
            {
                var (f, info) = sources[name];
                using var scope = NewDisposeScope();
                Tensor value = target.is_floating_point()
                    ? torch.tensor(f.ReadAsFloat32(name), info.Shape)
                    : torch.tensor(f.ReadAsInt64(name), info.Shape);
                target.copy_(value);
            }
        }
        finally
        {
            foreach (var f in opened) f.Dispose();
        }
    }

    /// <summary>
    /// Writes <paramref name="module"/>'s parameters and buffers to <paramref name="path"/> under their own names, in their
    /// own dtype (F32, F16 or BF16), atomically (temp file + rename). Loading the result gives identical tensors.
    /// </summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        if (!path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"'{path}': weights are written as .safetensors only", nameof(path));
        var entries = new List<SafetensorsWriteEntry>();
        foreach (var (name, tensor) in module.state_dict())
        {
            using var cpu = tensor.detach().cpu().contiguous();
            long[] shape = cpu.shape;
            entries.Add(cpu.dtype switch
            {
                ScalarType.Float32 => SafetensorsWriteEntry.FromFloat32(name, shape, cpu.data<float>().ToArray()),
                ScalarType.Float16 => SafetensorsWriteEntry.FromBytes(name, SafetensorsDType.F16, shape, LittleEndianBytes(cpu)),
                ScalarType.BFloat16 => SafetensorsWriteEntry.FromBytes(name, SafetensorsDType.BF16, shape, LittleEndianBytes(cpu)),
                ScalarType.Int64 => SafetensorsWriteEntry.FromBytes(name, SafetensorsDType.I64, shape, LittleEndianBytes(cpu)),
                _ => throw new NotSupportedException($"'{name}' has dtype {cpu.dtype}, which is not saved (F32, F16, BF16, I64)"),
            });
        }
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        SafetensorsWriter.Write(path, entries, metadata);
    }

    /// <summary>
    /// The weights file of a diffusers component folder: <c>diffusion_pytorch_model[.variant].safetensors</c> or
    /// <c>model[.variant].safetensors</c>, else their sharded <c>.safetensors.index.json</c>. Without a variant the plain
    /// file is preferred and an <c>.fp16</c> one used when it is the only one.
    /// </summary>
    /// <exception cref="ModelFolderException">no safetensors weights (the message explains a pickle-only folder).</exception>
    public static string ResolveWeightsFile(string componentFolder, string? variant = null)
    {
        ArgumentNullException.ThrowIfNull(componentFolder);
        var names = new List<string>();
        foreach (string stem in new[] { "diffusion_pytorch_model", "model" })
        {
            string[] files = variant is null
                ? [$"{stem}.safetensors", $"{stem}.fp16.safetensors"]
                : [$"{stem}.{variant}.safetensors", $"{stem}.safetensors"];
            foreach (string f in files) names.AddRange([f, f + ".index.json"]);
        }
        foreach (string name in names)
        {
            string candidate = Path.Combine(componentFolder, name);
            if (File.Exists(candidate)) return candidate;
        }
        var pickles = Directory.Exists(componentFolder)
            ? Directory.EnumerateFiles(componentFolder).Where(WeightFiles.IsPickle).Order(StringComparer.Ordinal).ToList()
            : [];
        if (pickles.Count > 0) throw new ModelFolderException(componentFolder, pickles.Select(WeightFiles.PickleRefusal).ToList());
        throw new ModelFolderException(componentFolder, [$"no weights file; expected one of {string.Join(", ", names.Take(4))}"]);
    }

    private static List<string> ReadShardIndex(string indexPath)
    {
        string root = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelFolderException(indexPath, ["has no \"weight_map\" object"]);
            var shards = new List<string>();
            foreach (var entry in map.EnumerateObject())
            {
                string shard = entry.Value.GetString() ?? throw new ModelFolderException(indexPath, [$"weight_map[\"{entry.Name}\"] is not a file name"]);
                string resolved = PathGuard.ResolveInside(root, shard);
                if (!shards.Contains(resolved)) shards.Add(resolved);
            }
            return shards;
        }
        catch (JsonException e)
        {
            throw new ModelFolderException(indexPath, [$"is not valid JSON ({e.Message})"]);
        }
    }

    private static byte[] LittleEndianBytes(Tensor cpu)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("saving non-F32 tensors needs a little-endian host");
        return cpu.bytes.ToArray();
    }
}

/// <summary>A weights file whose keys do not match a module's state dict; lists every bad key.</summary>
public sealed class StateDictMismatchException : Exception
{
    public StateDictMismatchException(string file, string module, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<string> shapeMismatches) : base(Describe(file, module, missing, unexpected, shapeMismatches))
    {
        File = file;
        Missing = missing;
        Unexpected = unexpected;
        ShapeMismatches = shapeMismatches;
    }

    public string File { get; }

    /// <summary>Model keys absent from the file.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>File keys the model does not have.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>"key: file [shape], model [shape]" for keys present in both with different shapes.</summary>
    public IReadOnlyList<string> ShapeMismatches { get; }

    private static string Describe(string file, string module, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched)
    {
        var sb = new StringBuilder($"'{file}' does not match {module}:");
        void Section(string title, IReadOnlyList<string> items)
        {
            if (items.Count == 0) return;
            sb.Append($" {items.Count} {title}: ");
            sb.Append(string.Join(", ", items.Take(200)));
            if (items.Count > 200) sb.Append($", ... ({items.Count - 200} more)");
            sb.Append(';');
        }
        Section("missing key(s)", missing);
        Section("unexpected key(s)", unexpected);
        Section("shape mismatch(es)", mismatched);
        return sb.ToString().TrimEnd(';');
    }
}

using System.Text;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Weights;
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
        using var source = TensorSource.Open(file);
        Load(module, source, ignorableKeys);
    }

    /// <summary>
    /// Copies the tensors of <paramref name="source"/> (a file, shards, or a single-file checkpoint's component under its
    /// diffusers names) into <paramref name="module"/>, name for name and shape for shape; nothing is copied unless every
    /// key matches.
    /// </summary>
    /// <exception cref="StateDictMismatchException">missing, unexpected or shape-mismatched keys (all listed by name).</exception>
    public static void Load(nn.Module module, TensorSource source, IEnumerable<string>? ignorableKeys = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        var ignorable = new HashSet<string>(ignorableKeys ?? [], StringComparer.Ordinal);
        var targets = module.state_dict();
        var missing = targets.Keys.Where(k => !source.Contains(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = source.Tensors.Select(t => t.Name).Where(k => !targets.ContainsKey(k) && !ignorable.Contains(k)).Order(StringComparer.Ordinal).ToList();
        var mismatched = new List<string>();
        foreach (var (name, target) in targets)
        {
            if (!source.Contains(name)) continue;
            var info = source.GetInfo(name);
            if (!info.Shape.SequenceEqual(target.shape))
                mismatched.Add($"{name}: file [{string.Join(", ", info.Shape)}], model [{string.Join(", ", target.shape)}] ({info.Location})");
            else if (!info.DType.IsFloatingPoint() && target.is_floating_point())
                mismatched.Add($"{name}: file dtype {info.DType.ToHeaderName()} is not floating point ({info.Location})");
        }
        if (missing.Count + unexpected.Count + mismatched.Count > 0)
            throw new StateDictMismatchException(source.Path, module.GetName(), missing, unexpected, mismatched);

        using var _ = no_grad();
        foreach (var (name, target) in targets)
        {
            var info = source.GetInfo(name);
            using var scope = NewDisposeScope();
            Tensor value = target.is_floating_point()
                ? torch.tensor(source.ReadAsFloat32(name), info.Shape)
                : torch.tensor(source.ReadAsInt64(name), info.Shape);
            target.copy_(value);
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
    /// <c>model[.variant].safetensors</c>, else their sharded <c>.safetensors.index.json</c> (Core's
    /// <see cref="ComponentWeightsFile.Resolve"/>). Without a variant the plain file is preferred and an <c>.fp16</c> one used
    /// when it is the only one.
    /// </summary>
    /// <exception cref="ModelFolderException">no safetensors weights (the message explains a pickle-only folder).</exception>
    public static string ResolveWeightsFile(string componentFolder, string? variant = null) =>
        ComponentWeightsFile.Resolve(componentFolder, variant);

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

using System.Runtime.InteropServices;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;

namespace CTCal.Core.Weights;

/// <summary>
/// The tensors of one model component by diffusers name, wherever they live: one safetensors file, a variant file, the
/// shards of a <c>*.safetensors.index.json</c>, or slices and reshapes of an original-format single-file checkpoint
/// (<see cref="Checkpoints.SingleFileCheckpoint"/>). Values are converted from F16/BF16/F32 to what the consumer needs;
/// raw bytes are available for byte-exact copies. Owns the files it opened. Reading from several threads is safe.
/// </summary>
public sealed class TensorSource : IDisposable
{
    private readonly Dictionary<string, (SafetensorsFile File, TensorSourceEntry Entry)> _byName;
    private readonly IReadOnlyList<SafetensorsFile> _owned;

    private TensorSource(string path, IReadOnlyList<SafetensorsFile> owned, IEnumerable<(SafetensorsFile File, TensorSourceEntry Entry)> entries)
    {
        Path = path;
        _owned = owned;
        _byName = new Dictionary<string, (SafetensorsFile, TensorSourceEntry)>(StringComparer.Ordinal);
        foreach (var (file, entry) in entries)
        {
            if (!_byName.TryAdd(entry.Name, (file, entry)))
                throw new SafetensorsException(file.Path, entry.Key, $"gives '{entry.Name}', which {_byName[entry.Name].Entry.Location} already gives");
        }
        Tensors = _byName.Values.Select(v => v.Entry).ToList();
    }

    /// <summary>What the source was opened from (a weights file, a shard index or a single-file checkpoint).</summary>
    public string Path { get; }

    /// <summary>Every tensor, by diffusers name.</summary>
    public IReadOnlyList<TensorSourceEntry> Tensors { get; }

    /// <summary>True when the source has a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The entry of <paramref name="name"/>.</summary>
    /// <exception cref="SafetensorsException">no such tensor (names the source).</exception>
    public TensorSourceEntry GetInfo(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _byName.TryGetValue(name, out var v) ? v.Entry : throw new SafetensorsException(Path, name, $"no such tensor ({_byName.Count} tensors)");
    }

    /// <summary>
    /// Opens a <c>.safetensors</c> file or a sharded checkpoint's <c>*.safetensors.index.json</c> (all its shards, each tensor
    /// once); names are the files' keys.
    /// </summary>
    /// <exception cref="ModelFolderException">a pickle file, or another format.</exception>
    /// <exception cref="SafetensorsException">a malformed file, or a tensor stored in two shards.</exception>
    public static TensorSource Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (WeightFiles.IsPickle(path)) throw new ModelFolderException(path, [WeightFiles.PickleRefusal(path)]);
        if (!File.Exists(path)) throw new ModelFolderException(path, [$"weights file '{path}' does not exist"]);
        IReadOnlyList<string> files = ComponentWeightsFile.IsShardIndex(path) ? ComponentWeightsFile.ReadShardIndex(path) : [path];
        var opened = new List<SafetensorsFile>();
        try
        {
            foreach (string f in files)
            {
                WeightFiles.EnsureSafetensors(f);
                opened.Add(SafetensorsFile.Open(f));
            }
            var entries = opened.SelectMany(f => f.Tensors.Select(t => (f, new TensorSourceEntry(t.Name, t.DType, t.Shape, f.Path, t.Name, 0))));
            return new TensorSource(path, opened, entries);
        }
        catch
        {
            foreach (var f in opened) f.Dispose();
            throw;
        }
    }

    /// <summary>Opens the weights of a diffusers component folder (see <see cref="ComponentWeightsFile.Resolve"/>).</summary>
    public static TensorSource OpenComponent(string componentFolder, string? variant = null) =>
        Open(ComponentWeightsFile.Resolve(componentFolder, variant));

    /// <summary>
    /// A source over entries that point into <paramref name="file"/> (renamed, reshaped or sliced); takes ownership of the file.
    /// Each entry's data range is checked against the stored tensor.
    /// </summary>
    /// <exception cref="SafetensorsException">an entry whose range or element type does not fit its stored tensor.</exception>
    public static TensorSource FromEntries(string path, SafetensorsFile file, IEnumerable<TensorSourceEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(entries);
        try
        {
            var list = new List<(SafetensorsFile, TensorSourceEntry)>();
            foreach (var e in entries)
            {
                var stored = file.GetInfo(e.Key);
                if (stored.DType != e.DType)
                    throw new SafetensorsException(file.Path, e.Key, $"is {stored.DType.ToHeaderName()}, but '{e.Name}' expects {e.DType.ToHeaderName()}");
                if (e.ElementOffset < 0 || e.ElementOffset + e.ElementCount > stored.ElementCount)
                    throw new SafetensorsException(file.Path, e.Key,
                        $"has {stored.ElementCount} elements; '{e.Name}' [{string.Join(", ", e.Shape)}] from element {e.ElementOffset} does not fit");
                list.Add((file, e));
            }
            return new TensorSource(path, [file], list);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The tensor converted to float32 (F16/BF16 exactly).</summary>
    /// <exception cref="SafetensorsException">no such tensor, or too many elements for an array.</exception>
    public float[] ReadAsFloat32(string name)
    {
        var entry = GetInfo(name);
        if (entry.ElementCount > Array.MaxLength) throw new SafetensorsException(entry.File, entry.Key, $"{entry.ElementCount} elements do not fit in one array");
        var result = new float[entry.ElementCount];
        ReadAsFloat32(name, result);
        return result;
    }

    /// <summary>Converts the tensor to float32 into <paramref name="destination"/> (length = its element count).</summary>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        var (file, entry) = Lookup(name);
        if (destination.Length != entry.ElementCount)
            throw new SafetensorsException(entry.File, entry.Key, $"'{name}' has {entry.ElementCount} elements but the destination holds {destination.Length}");
        file.ReadAsFloat32(entry.Key, entry.ElementOffset, destination);
    }

    /// <summary>The tensor as int64 (integer dtypes only; whole stored tensors only).</summary>
    public long[] ReadAsInt64(string name)
    {
        var (file, entry) = Lookup(name);
        if (entry.ElementOffset != 0 || entry.ElementCount != file.GetInfo(entry.Key).ElementCount)
            throw new SafetensorsException(entry.File, entry.Key, $"'{name}' is a slice; integer slices are not read");
        return file.ReadAsInt64(entry.Key);
    }

    /// <summary>Copies the tensor's raw little-endian bytes (in its stored dtype) to <paramref name="destination"/>.</summary>
    public void CopyBytesTo(string name, Stream destination)
    {
        var (file, entry) = Lookup(name);
        int size = entry.DType.SizeInBytes();
        file.CopyBytesTo(entry.Key, entry.ElementOffset * size, entry.ElementCount * size, destination);
    }

    /// <summary>
    /// Writes the tensor to <paramref name="destination"/> as little-endian float32 (<paramref name="fp16"/> false) or float16,
    /// copying bytes when the stored dtype is already the one asked for.
    /// </summary>
    public void WriteAs(string name, bool fp16, Stream destination)
    {
        var entry = GetInfo(name);
        if (entry.DType == (fp16 ? SafetensorsDType.F16 : SafetensorsDType.F32) && BitConverter.IsLittleEndian)
        {
            CopyBytesTo(name, destination);
            return;
        }
        WriteFloats(ReadAsFloat32(name), fp16, destination);
    }

    /// <summary>Writes <paramref name="values"/> as little-endian float32 or float16.</summary>
    public static void WriteFloats(float[] values, bool fp16, Stream destination)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(destination);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("writing tensor data needs a little-endian host");
        if (!fp16)
        {
            destination.Write(MemoryMarshal.AsBytes(values.AsSpan()));
            return;
        }
        var buffer = new Half[Math.Min(values.Length, 1 << 16)];
        for (int i = 0; i < values.Length; i += buffer.Length)
        {
            int n = Math.Min(buffer.Length, values.Length - i);
            for (int j = 0; j < n; j++) buffer[j] = (Half)values[i + j];
            destination.Write(MemoryMarshal.AsBytes(buffer.AsSpan(0, n)));
        }
    }

    private (SafetensorsFile File, TensorSourceEntry Entry) Lookup(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _byName.TryGetValue(name, out var v) ? v : throw new SafetensorsException(Path, name, $"no such tensor ({_byName.Count} tensors)");
    }

    /// <summary>Closes the files it opened.</summary>
    public void Dispose()
    {
        foreach (var f in _owned) f.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Path} ({_byName.Count} tensors)";
}

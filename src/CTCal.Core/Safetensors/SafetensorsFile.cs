using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace CTCal.Core.Safetensors;

/// <summary>
/// A safetensors file opened read-only through a memory mapping: the header is parsed and validated on
/// <see cref="Open"/>; tensor data is read from the mapping on demand, never loaded as a whole.
/// The instance owns the mapping and the file handle; spans from <see cref="GetBytes"/> are valid until
/// <see cref="Dispose"/>. Reading from several threads at once is safe; disposing while others read is not.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile _mapping;
    private readonly MemoryMappedViewAccessor _view;
    private readonly Dictionary<string, SafetensorsTensorInfo> _byName;
    private readonly long _dataOffset;
    private byte* _base;
    private bool _disposed;

    private SafetensorsFile(string path, MemoryMappedFile mapping, MemoryMappedViewAccessor view, byte* basePointer,
        long dataOffset, List<SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _mapping = mapping;
        _view = view;
        _base = basePointer;
        _dataOffset = dataOffset;
        Tensors = tensors.AsReadOnly();
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The path the file was opened with.</summary>
    public string Path { get; }

    /// <summary>All tensors, in data-offset order (the order the reference writer stores them).</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>The <c>"__metadata__"</c> string map, in header order; empty when the file has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Byte offset of the data section from the start of the file (8 + header length).</summary>
    public long DataSectionOffset => _dataOffset;

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="SafetensorsException">the file cannot be read or is not a valid safetensors file.</exception>
    public static SafetensorsFile Open(string path) => Open(path, SafetensorsHeader.MaxTensors);

    /// <summary><see cref="Open(string)"/> with another bound on the tensor count (tests use a small one).</summary>
    internal static SafetensorsFile Open(string path, int maxTensors)
    {
        ArgumentNullException.ThrowIfNull(path);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new SafetensorsException(path, null, $"cannot open the file ({e.Message})", e);
        }

        MemoryMappedFile? mapping = null;
        MemoryMappedViewAccessor? view = null;
        bool pointerAcquired = false;
        try
        {
            long fileLength = stream.Length;
            if (fileLength < 8)
                throw new SafetensorsException(path, null, $"the file has {fileLength} bytes, fewer than the 8-byte header length");

            mapping = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mapping.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            pointerAcquired = true;
            p += view.PointerOffset;

            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(p, 8));
            if (headerLength > (ulong)(fileLength - 8))
                throw new SafetensorsException(path, null,
                    $"the header length {headerLength} runs past the end of the file ({fileLength} bytes)");
            if (headerLength > SafetensorsHeader.MaxHeaderBytes)
                throw new SafetensorsException(path, null,
                    $"the header length {headerLength} exceeds the limit of {SafetensorsHeader.MaxHeaderBytes} bytes");

            var header = new ReadOnlySpan<byte>(p + 8, (int)headerLength).ToArray();
            long dataOffset = 8 + (long)headerLength;
            var (tensors, metadata) = SafetensorsHeader.Parse(path, header, fileLength - dataOffset, maxTensors);
            return new SafetensorsFile(path, mapping, view, p, dataOffset, tensors, metadata);
        }
        catch (Exception e)
        {
            if (pointerAcquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            mapping?.Dispose();
            stream.Dispose();
            if (e is IOException or UnauthorizedAccessException)
                throw new SafetensorsException(path, null, $"cannot map the file ({e.Message})", e);
            throw;
        }
    }

    /// <summary>True when the file has a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of <paramref name="name"/>.</summary>
    /// <exception cref="SafetensorsException">no such tensor.</exception>
    public SafetensorsTensorInfo GetInfo(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_byName.TryGetValue(name, out var info)) return info;
        throw new SafetensorsException(Path, name, $"no such tensor in the file ({_byName.Count} tensors)");
    }

    /// <summary>
    /// The raw little-endian bytes of a tensor, as a view into the mapping (no copy), valid until <see cref="Dispose"/>.
    /// </summary>
    /// <exception cref="SafetensorsException">no such tensor, or it is 2 GiB or larger (use <see cref="CopyBytesTo"/>).</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var info = GetInfo(name);
        if (info.ByteLength > int.MaxValue)
            throw new SafetensorsException(Path, name,
                $"{info.ByteLength} bytes do not fit in one span (2 GiB limit); use CopyBytesTo to stream it");
        return Span(info.DataStart, (int)info.ByteLength);
    }

    /// <summary>Copies a tensor's raw bytes to <paramref name="destination"/> in chunks; any size.</summary>
    public void CopyBytesTo(string name, Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var info = GetInfo(name);
        const int chunk = 1 << 20;
        for (long offset = 0; offset < info.ByteLength; offset += chunk)
        {
            int n = (int)Math.Min(chunk, info.ByteLength - offset);
            destination.Write(Span(info.DataStart + offset, n));
        }
    }

    /// <summary>
    /// Copies <paramref name="byteLength"/> raw bytes of a tensor, starting <paramref name="byteOffset"/> bytes into its data,
    /// to <paramref name="destination"/> in chunks (a slice of a fused tensor, e.g. one third of a q/k/v projection).
    /// </summary>
    /// <exception cref="SafetensorsException">no such tensor, or the range runs outside its data.</exception>
    public void CopyBytesTo(string name, long byteOffset, long byteLength, Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var info = GetInfo(name);
        if (byteOffset < 0 || byteLength < 0 || byteOffset + byteLength > info.ByteLength)
            throw new SafetensorsException(Path, name, $"bytes {byteOffset}..{byteOffset + byteLength} lie outside its {info.ByteLength} bytes");
        const int chunk = 1 << 20;
        for (long offset = 0; offset < byteLength; offset += chunk)
        {
            int n = (int)Math.Min(chunk, byteLength - offset);
            destination.Write(Span(info.DataStart + byteOffset + offset, n));
        }
    }

    /// <summary>
    /// Converts <c>destination.Length</c> elements of a tensor, starting at element <paramref name="elementOffset"/>, to
    /// float32 (a slice of a fused tensor).
    /// </summary>
    /// <exception cref="SafetensorsException">no such tensor, or the range runs outside its elements.</exception>
    public void ReadAsFloat32(string name, long elementOffset, Span<float> destination)
    {
        var info = GetInfo(name);
        long count = info.ElementCount;
        if (elementOffset < 0 || elementOffset + destination.Length > count)
            throw new SafetensorsException(Path, name, $"elements {elementOffset}..{elementOffset + destination.Length} lie outside its {count} elements");
        int size = info.DType.SizeInBytes();
        const int chunkElements = 1 << 18;
        for (long start = 0; start < destination.Length; start += chunkElements)
        {
            int n = (int)Math.Min(chunkElements, destination.Length - start);
            var source = Span(info.DataStart + (elementOffset + start) * size, n * size);
            SafetensorsConvert.ToFloat32(info.DType, source, destination.Slice((int)start, n));
        }
    }

    /// <summary>The tensor converted to float32 (F16/BF16 exactly, F64 rounded, integers and BOOL as values).</summary>
    /// <exception cref="SafetensorsException">no such tensor, or more elements than an array can hold.</exception>
    public float[] ReadAsFloat32(string name)
    {
        var info = GetInfo(name);
        long count = info.ElementCount;
        if (count > Array.MaxLength)
            throw new SafetensorsException(Path, name, $"{count} elements do not fit in one array");
        var result = new float[count];
        ReadAsFloat32(name, result);
        return result;
    }

    /// <summary>Converts the tensor to float32 into <paramref name="destination"/>, whose length must equal its element count.</summary>
    /// <exception cref="SafetensorsException">no such tensor, or <paramref name="destination"/> has the wrong length.</exception>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        var info = GetInfo(name);
        long count = info.ElementCount;
        if (destination.Length != count)
            throw new SafetensorsException(Path, name, $"has {count} elements but the destination holds {destination.Length}");
        int size = info.DType.SizeInBytes();
        const int chunkElements = 1 << 18;
        for (long start = 0; start < destination.Length; start += chunkElements)
        {
            int n = (int)Math.Min(chunkElements, destination.Length - start);
            var source = Span(info.DataStart + start * size, n * size);
            SafetensorsConvert.ToFloat32(info.DType, source, destination.Slice((int)start, n));
        }
    }

    /// <summary>The tensor as int64: integer dtypes and BOOL only.</summary>
    /// <exception cref="SafetensorsException">no such tensor, a floating-point dtype, or a U64 value above long.MaxValue.</exception>
    public long[] ReadAsInt64(string name)
    {
        var info = GetInfo(name);
        if (info.DType.IsFloatingPoint())
            throw new SafetensorsException(Path, name, $"is {info.DType.ToHeaderName()}, not an integer dtype; use ReadAsFloat32");
        long count = info.ElementCount;
        if (count > Array.MaxLength)
            throw new SafetensorsException(Path, name, $"{count} elements do not fit in one array");
        var result = new long[count];
        int size = info.DType.SizeInBytes();
        const int chunkElements = 1 << 18;
        for (long start = 0; start < result.Length; start += chunkElements)
        {
            int n = (int)Math.Min(chunkElements, result.Length - start);
            var source = Span(info.DataStart + start * size, n * size);
            if (!SafetensorsConvert.ToInt64(info.DType, source, result.AsSpan((int)start, n), out int badIndex))
                throw new SafetensorsException(Path, name, $"element {start + badIndex} does not fit in int64");
        }
        return result;
    }

    private ReadOnlySpan<byte> Span(long dataStart, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new ReadOnlySpan<byte>(_base + _dataOffset + dataStart, length);
    }

    /// <summary>Unmaps the file and closes it; spans obtained earlier must no longer be used.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mapping.Dispose();
    }

    public override string ToString() => $"{Path} ({Tensors.Count} tensors)";
}

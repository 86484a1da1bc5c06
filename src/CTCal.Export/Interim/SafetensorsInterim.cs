// Interim stand-in for CTCal.Core.Safetensors (same names and signatures), removed once the Core reader is merged.
using System.Buffers.Binary;
using System.Text.Json;

namespace CTCal.Core.Safetensors;

internal enum SafetensorsDType { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 }

internal sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, long[] Shape, long DataStart, long DataEnd)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => DataEnd - DataStart;
}

internal sealed class SafetensorsException(string file, string? tensor, string message) : Exception(tensor is null ? $"{file}: {message}" : $"{file}: tensor '{tensor}': {message}");

internal sealed class SafetensorsFile : IDisposable
{
    private readonly FileStream _stream;
    private readonly long _dataOffset;
    private readonly Dictionary<string, SafetensorsTensorInfo> _byName;

    private SafetensorsFile(string path, FileStream stream, long dataOffset, List<SafetensorsTensorInfo> tensors)
    {
        Path = path;
        _stream = stream;
        _dataOffset = dataOffset;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name);
    }

    public string Path { get; }
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    public static SafetensorsFile Open(string path)
    {
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            Span<byte> len = stackalloc byte[8];
            fs.ReadExactly(len);
            long n = BinaryPrimitives.ReadInt64LittleEndian(len);
            if (n <= 0 || n > 100_000_000 || 8 + n > fs.Length) throw new SafetensorsException(path, null, "bad header length");
            var header = new byte[n];
            fs.ReadExactly(header);
            using var doc = JsonDocument.Parse(header);
            var list = new List<SafetensorsTensorInfo>();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                var dtype = Enum.Parse<SafetensorsDType>(p.Value.GetProperty("dtype").GetString()!);
                long[] shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                list.Add(new SafetensorsTensorInfo(p.Name, dtype, shape, offs[0], offs[1]));
            }
            return new SafetensorsFile(path, fs, 8 + n, list);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public SafetensorsTensorInfo GetInfo(string name) =>
        _byName.TryGetValue(name, out var i) ? i : throw new SafetensorsException(Path, name, "no such tensor");

    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var info = GetInfo(name);
        var buf = new byte[info.ByteLength];
        RandomAccess.Read(_stream.SafeFileHandle, buf, _dataOffset + info.DataStart);
        return buf;
    }

    public void CopyBytesTo(string name, Stream destination) => destination.Write(GetBytes(name));

    public float[] ReadAsFloat32(string name)
    {
        var info = GetInfo(name);
        var bytes = GetBytes(name);
        var result = new float[info.ElementCount];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = info.DType switch
            {
                SafetensorsDType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes[(i * 4)..]),
                SafetensorsDType.F16 => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes[(i * 2)..]),
                SafetensorsDType.BF16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i * 2)..]) << 16),
                _ => throw new SafetensorsException(Path, name, $"not a float tensor ({info.DType})"),
            };
        }
        return result;
    }

    public void Dispose() => _stream.Dispose();
}

internal sealed record SafetensorsWriteEntry(string Name, SafetensorsDType DType, long[] Shape, Action<Stream> WriteData)
{
    public static SafetensorsWriteEntry FromFloat32(string name, long[] shape, float[] data) =>
        new(name, SafetensorsDType.F32, shape, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())));
}

internal static class SafetensorsWriter
{
    public static void Write(string path, IReadOnlyList<SafetensorsWriteEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var t in tensors)
        {
            long size = t.Shape.Aggregate(1L, (a, b) => a * b) * (t.DType switch { SafetensorsDType.F16 or SafetensorsDType.BF16 => 2, SafetensorsDType.I64 => 8, _ => 4 });
            header[t.Name] = new { dtype = t.DType.ToString(), shape = t.Shape, data_offsets = new[] { offset, offset + size } };
            offset += size;
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8;
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(len, json.Length + pad);
        fs.Write(len);
        fs.Write(json);
        for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
        foreach (var t in tensors) t.WriteData(fs);
    }
}

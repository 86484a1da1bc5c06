using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace CTCal.Core.Safetensors;

/// <summary>
/// One tensor to write: its header fields and a callback that writes exactly ElementCount x element-size
/// little-endian bytes to the stream it is given (the writer checks the count). The callback must not dispose the stream.
/// </summary>
public sealed record SafetensorsWriteEntry(string Name, SafetensorsDType DType, long[] Shape, Action<Stream> WriteData)
{
    /// <summary>An F32 entry over <paramref name="data"/> (not copied: do not change it before the write).</summary>
    public static SafetensorsWriteEntry FromFloat32(string name, long[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return new SafetensorsWriteEntry(name, SafetensorsDType.F32, shape, stream =>
        {
            if (BitConverter.IsLittleEndian)
            {
                stream.Write(MemoryMarshal.AsBytes(data.AsSpan()));
                return;
            }
            Span<byte> buffer = stackalloc byte[4];
            foreach (float v in data)
            {
                BinaryPrimitives.WriteSingleLittleEndian(buffer, v);
                stream.Write(buffer);
            }
        });
    }

    /// <summary>An entry over raw little-endian bytes (not copied).</summary>
    public static SafetensorsWriteEntry FromBytes(string name, SafetensorsDType dtype, long[] shape, ReadOnlyMemory<byte> data) =>
        new(name, dtype, shape, stream => stream.Write(data.Span));
}

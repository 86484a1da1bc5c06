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

    /// <summary>
    /// An entry over <paramref name="data"/> stored as <paramref name="dtype"/>: F32 as is, F16 and BF16 rounded to nearest
    /// even (the data is converted now, so it may change afterwards).
    /// </summary>
    /// <exception cref="ArgumentException">a dtype other than F32, F16 or BF16.</exception>
    public static SafetensorsWriteEntry FromFloat32As(string name, SafetensorsDType dtype, long[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        switch (dtype)
        {
            case SafetensorsDType.F32:
                return FromFloat32(name, shape, (float[])data.Clone());
            case SafetensorsDType.F16:
            {
                var bytes = new byte[data.Length * 2];
                for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), (Half)data[i]);
                return FromBytes(name, dtype, shape, bytes);
            }
            case SafetensorsDType.BF16:
            {
                var bytes = new byte[data.Length * 2];
                for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), SafetensorsConvert.SingleToBFloat16(data[i]));
                return FromBytes(name, dtype, shape, bytes);
            }
            default:
                throw new ArgumentException($"'{name}': {dtype.ToHeaderName()} is not a float dtype this writer converts to (F32, F16, BF16)", nameof(dtype));
        }
    }

    /// <summary>An entry over raw little-endian bytes (not copied).</summary>
    public static SafetensorsWriteEntry FromBytes(string name, SafetensorsDType dtype, long[] shape, ReadOnlyMemory<byte> data) =>
        new(name, dtype, shape, stream => stream.Write(data.Span));
}

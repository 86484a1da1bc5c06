using System.Buffers.Binary;
using System.Text;

namespace CTCal.Core.IO;

/// <summary>
/// One PNG chunk written as the PNG specification (ISO/IEC 15948, 5.3) lays it out: data length (big-endian), the
/// four-letter type, the data, and the CRC-32 (<see cref="Crc32"/>) of type and data. The plugin's PNG writer and the
/// host's text chunks write every chunk through it.
/// </summary>
public static class PngChunk
{
    /// <summary>Writes the chunk <paramref name="type"/> with <paramref name="data"/> to <paramref name="output"/>.</summary>
    public static void Write(Stream output, string type, ReadOnlySpan<byte> data)
    {
        ArgumentNullException.ThrowIfNull(output);
        Span<byte> buffer = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(buffer, data.Length);
        output.Write(buffer);

        Span<byte> typeBytes = stackalloc byte[4];
        Encoding.ASCII.GetBytes(type, typeBytes);
        output.Write(typeBytes);
        output.Write(data);

        uint crc = Crc32.Update(Crc32.Initial, typeBytes);
        crc = Crc32.Update(crc, data);
        BinaryPrimitives.WriteUInt32BigEndian(buffer, Crc32.Finish(crc));
        output.Write(buffer);
    }
}

using System.Buffers.Binary;
using System.Text;

namespace CTCal.Core.IO;

/// <summary>
/// One PNG chunk written as the PNG specification (ISO/IEC 15948, 5.3) lays it out: data length (big-endian), the
/// four-letter type, the data, and the CRC-32 (<see cref="Crc32"/>) of type and data. The plugin's PNG writer and the
/// host's text chunks write every chunk through it, and the plugin's PNG reader and the host's text reader find the chunks
/// of a file through <see cref="ReadAll"/>.
/// </summary>
public static class PngChunk
{
    /// <summary>The eight bytes every PNG file starts with.</summary>
    public static ReadOnlySpan<byte> Signature => [137, 80, 78, 71, 13, 10, 26, 10];

    /// <summary>
    /// The chunks of <paramref name="png"/> in file order, up to and including IEND (bytes after it are not read).
    /// </summary>
    /// <param name="checkCrc">Also check each chunk's CRC-32.</param>
    /// <param name="what">What the bytes are, for the bad-signature message (null: "Not a PNG file").</param>
    /// <exception cref="InvalidDataException">A bad signature, a chunk running past the end, or (with <paramref name="checkCrc"/>) a bad CRC, naming the chunk's byte offset.</exception>
    public static List<PngChunkAt> ReadAll(ReadOnlySpan<byte> png, bool checkCrc, string? what = null)
    {
        if (png.Length < Signature.Length || !png[..Signature.Length].SequenceEqual(Signature))
        {
            throw new InvalidDataException(what is null ? "Not a PNG file (bad signature)" : $"{what} is not a PNG file (bad signature)");
        }

        var chunks = new List<PngChunkAt>();
        int offset = Signature.Length;
        while (offset + 12 <= png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png[offset..]);
            if (length < 0 || offset + 12L + length > png.Length)
            {
                throw new InvalidDataException($"PNG chunk at byte {offset} runs past the end of the file");
            }

            string type = Encoding.ASCII.GetString(png.Slice(offset + 4, 4));
            if (checkCrc && Crc32.Compute(png.Slice(offset + 4, length + 4)) != BinaryPrimitives.ReadUInt32BigEndian(png[(offset + 8 + length)..]))
            {
                throw new InvalidDataException($"PNG chunk {type} at byte {offset} has a bad CRC");
            }

            chunks.Add(new PngChunkAt(type, offset, length));
            offset += 12 + length;
            if (type == "IEND")
            {
                break;
            }
        }

        return chunks;
    }

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

/// <summary>
/// A chunk found in a PNG file by <see cref="PngChunk.ReadAll"/>: its type, the offset of its first byte (the length
/// field) and its data length; the whole chunk is <paramref name="Length"/> + 12 bytes.
/// </summary>
public readonly record struct PngChunkAt(string Type, int Offset, int Length)
{
    /// <summary>Offset of the chunk's data.</summary>
    public int DataOffset => Offset + 8;
}

using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using CTCal.Core.IO;

namespace CTCal.Plugin.Imaging;

/// <summary>
/// Minimal PNG writer (8-bit RGB, non-interlaced) with text chunks, so the plugin needs no native imaging library.
/// Follows the PNG specification (ISO/IEC 15948): signature, IHDR, tEXt/iTXt, IDAT (zlib), IEND, each chunk CRC-32.
/// </summary>
internal static class PngEncoder
{
    private static readonly byte[] Signature = { 137, 80, 78, 71, 13, 10, 26, 10 };

    /// <summary>Encodes <paramref name="rgb"/> (row-major, 3 bytes per pixel) with the given text entries.</summary>
    /// <param name="text">Keyword/value pairs. Latin-1 text goes in tEXt chunks, anything else in iTXt (UTF-8).</param>
    public static byte[] Encode(ReadOnlySpan<byte> rgb, int width, int height, IEnumerable<KeyValuePair<string, string>>? text = null)
    {
        if (width <= 0 || height <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(width), $"PNG size must be positive, got {width}x{height}");
        }

        if (rgb.Length != checked(width * height * 3))
        {
            throw new ArgumentException($"Expected {width * height * 3} RGB bytes for {width}x{height}, got {rgb.Length}", nameof(rgb));
        }

        using var output = new MemoryStream();
        output.Write(Signature);

        Span<byte> header = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], height);
        header[8] = 8;  // bit depth
        header[9] = 2;  // colour type: truecolour
        header[10] = 0; // deflate
        header[11] = 0; // adaptive filtering
        header[12] = 0; // no interlace
        PngChunk.Write(output, "IHDR", header);

        foreach (var (keyword, value) in text ?? Array.Empty<KeyValuePair<string, string>>())
        {
            WriteTextChunk(output, keyword, value);
        }

        PngChunk.Write(output, "IDAT", Compress(rgb, width, height));
        PngChunk.Write(output, "IEND", ReadOnlySpan<byte>.Empty);
        return output.ToArray();
    }

    private static byte[] Compress(ReadOnlySpan<byte> rgb, int width, int height)
    {
        int stride = width * 3;
        var filtered = new byte[height * (stride + 1)];
        for (int y = 0; y < height; y++)
        {
            // Filter type 1 (Sub): each byte minus the byte one pixel to the left; cheap and usually smaller than None.
            var row = rgb.Slice(y * stride, stride);
            var target = filtered.AsSpan(y * (stride + 1), stride + 1);
            target[0] = 1;
            for (int x = 0; x < stride; x++)
            {
                byte left = x >= 3 ? row[x - 3] : (byte)0;
                target[x + 1] = (byte)(row[x] - left);
            }
        }

        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(filtered);
        }

        return compressed.ToArray();
    }

    private static void WriteTextChunk(Stream output, string keyword, string value)
    {
        if (keyword.Length is < 1 or > 79 || !IsLatin1(keyword) || keyword.Contains('\0') || keyword.Trim() != keyword)
        {
            throw new ArgumentException($"Invalid PNG text keyword '{keyword}' (1-79 Latin-1 characters, no leading/trailing spaces)", nameof(keyword));
        }

        var latin1 = Encoding.Latin1;
        using var data = new MemoryStream();
        data.Write(latin1.GetBytes(keyword));
        data.WriteByte(0);
        if (IsLatin1(value) && !value.Contains('\0'))
        {
            data.Write(latin1.GetBytes(value));
            PngChunk.Write(output, "tEXt", data.ToArray());
        }
        else
        {
            data.WriteByte(0); // compression flag: uncompressed
            data.WriteByte(0); // compression method
            data.WriteByte(0); // empty language tag
            data.WriteByte(0); // empty translated keyword
            data.Write(Encoding.UTF8.GetBytes(value));
            PngChunk.Write(output, "iTXt", data.ToArray());
        }
    }

    private static bool IsLatin1(string s)
    {
        foreach (char c in s)
        {
            if (c > 0xFF)
            {
                return false;
            }
        }

        return true;
    }
}

using System.Buffers.Binary;
using System.IO.Compression;
using CTCal.Core.IO;

namespace CTCal.Plugin.Imaging;

/// <summary>
/// Minimal PNG reader for image-to-image inputs: 8-bit greyscale, RGB, grey+alpha or RGBA, non-interlaced, all five
/// filter types (PNG specification, ISO/IEC 15948). Checks every chunk's CRC-32. Alpha is dropped.
/// </summary>
internal static class PngDecoder
{
    /// <summary>Decodes to RGB rows (3 bytes per pixel). Throws <see cref="InvalidDataException"/> naming the problem.</summary>
    public static (byte[] Rgb, int Width, int Height) Decode(ReadOnlySpan<byte> png)
    {
        int width = 0, height = 0, channels = 0;
        using var idat = new MemoryStream();
        foreach (var chunk in PngChunk.ReadAll(png, checkCrc: true, "Init image"))
        {
            var data = png.Slice(chunk.DataOffset, chunk.Length);
            switch (chunk.Type)
            {
                case "IHDR":
                    width = BinaryPrimitives.ReadInt32BigEndian(data);
                    height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                    byte depth = data[8], colour = data[9], interlace = data[12];
                    channels = colour switch { 0 => 1, 2 => 3, 4 => 2, 6 => 4, _ => 0 };
                    if (depth != 8 || channels == 0 || interlace != 0)
                    {
                        throw new InvalidDataException($"PNG of bit depth {depth}, colour type {colour}, interlace {interlace} is not supported (8-bit grey/RGB/RGBA, non-interlaced)");
                    }

                    if (width <= 0 || height <= 0 || (long)width * height > 64L * 1024 * 1024)
                    {
                        throw new InvalidDataException($"PNG size {width}x{height} is out of range");
                    }

                    break;
                case "IDAT":
                    idat.Write(data);
                    break;
            }
        }

        if (channels == 0)
        {
            throw new InvalidDataException("PNG has no IHDR chunk");
        }

        int stride = width * channels;
        var raw = new byte[(long)height * (stride + 1)];
        idat.Position = 0;
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress))
        {
            int read = 0;
            while (read < raw.Length)
            {
                int n = zlib.Read(raw, read, raw.Length - read);
                if (n == 0)
                {
                    throw new InvalidDataException($"PNG image data is truncated ({read} of {raw.Length} bytes)");
                }

                read += n;
            }
        }

        var pixels = new byte[height * stride];
        for (int y = 0; y < height; y++)
        {
            byte filter = raw[y * (stride + 1)];
            var line = raw.AsSpan(y * (stride + 1) + 1, stride);
            var current = pixels.AsSpan(y * stride, stride);
            var previous = y > 0 ? pixels.AsSpan((y - 1) * stride, stride) : Span<byte>.Empty;
            for (int x = 0; x < stride; x++)
            {
                int a = x >= channels ? current[x - channels] : 0;
                int b = y > 0 ? previous[x] : 0;
                int c = x >= channels && y > 0 ? previous[x - channels] : 0;
                current[x] = (byte)(line[x] + filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) >> 1,
                    4 => Paeth(a, b, c),
                    _ => throw new InvalidDataException($"PNG row {y} has unknown filter type {filter}"),
                });
            }
        }

        var rgb = new byte[width * height * 3];
        for (int i = 0; i < width * height; i++)
        {
            for (int k = 0; k < 3; k++)
            {
                rgb[i * 3 + k] = channels <= 2 ? pixels[i * channels] : pixels[i * channels + k];
            }
        }

        return (rgb, width, height);
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}

using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using CTCal.Core.IO;
using CTCal.Plugin.Imaging;
using Xunit;

namespace CTCal.Plugin.Tests;

public class PngTests
{
    [Fact]
    public void RoundTripKeepsPixelsAndTextChunks()
    {
        const int width = 13, height = 7;
        var rgb = new byte[width * height * 3];
        var rng = new Random(5);
        rng.NextBytes(rgb);
        var text = new Dictionary<string, string>
        {
            ["prompt"] = "a red cube on top of a blue sphere",
            ["negative_prompt"] = "",
            ["seed"] = "42",
            ["model"] = "naïve café", // Latin-1: tEXt
            ["comment"] = "猫 and 🐕", // not Latin-1: iTXt
        };

        byte[] png = PngEncoder.Encode(rgb, width, height, text);
        var decoded = PngReader.Read(png);

        Assert.Equal(width, decoded.Width);
        Assert.Equal(height, decoded.Height);
        Assert.Equal(rgb, decoded.Rgb);
        Assert.Equal(text, decoded.Text);
        Assert.Contains("tEXt", decoded.ChunkTypes);
        Assert.Contains("iTXt", decoded.ChunkTypes);
        Assert.Equal("IHDR", decoded.ChunkTypes[0]);
        Assert.Equal("IEND", decoded.ChunkTypes[^1]);
    }

    [Fact]
    public void Crc32MatchesTheStandardCheckValue()
    {
        // The CRC-32 check value for "123456789" (ISO 3309 / ITU-T V.42).
        Assert.Equal(0xCBF43926u, Crc32.Compute(Encoding.ASCII.GetBytes("123456789")));
    }

    [Fact]
    public void RejectsWrongBufferSizeAndBadKeywords()
    {
        var ex = Assert.Throws<ArgumentException>(() => PngEncoder.Encode(new byte[10], 2, 2));
        Assert.Contains("12", ex.Message);
        Assert.Throws<ArgumentException>(() => PngEncoder.Encode(new byte[12], 2, 2, new Dictionary<string, string> { [" bad"] = "x" }));
    }
}

/// <summary>An independent PNG decoder for the tests: checks CRCs, inflates, undoes all five filter types.</summary>
internal sealed record PngReader(int Width, int Height, byte[] Rgb, Dictionary<string, string> Text, List<string> ChunkTypes)
{
    public static PngReader Read(byte[] png)
    {
        Assert.Equal(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }, png[..8]);
        int pos = 8, width = 0, height = 0;
        var idat = new MemoryStream();
        var text = new Dictionary<string, string>();
        var types = new List<string>();
        while (pos < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            string type = Encoding.ASCII.GetString(png, pos + 4, 4);
            var data = png.AsSpan(pos + 8, length);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + length));
            Assert.Equal(ReferenceCrc(png.AsSpan(pos + 4, length + 4)), crc);
            types.Add(type);
            switch (type)
            {
                case "IHDR":
                    width = BinaryPrimitives.ReadInt32BigEndian(data);
                    height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                    Assert.Equal(8, data[8]);
                    Assert.Equal(2, data[9]);
                    break;
                case "IDAT":
                    idat.Write(data);
                    break;
                case "tEXt":
                {
                    int zero = data.IndexOf((byte)0);
                    text[Encoding.Latin1.GetString(data[..zero])] = Encoding.Latin1.GetString(data[(zero + 1)..]);
                    break;
                }

                case "iTXt":
                {
                    int zero = data.IndexOf((byte)0);
                    string key = Encoding.Latin1.GetString(data[..zero]);
                    var rest = data[(zero + 3)..];
                    rest = rest[(rest.IndexOf((byte)0) + 1)..];
                    rest = rest[(rest.IndexOf((byte)0) + 1)..];
                    text[key] = Encoding.UTF8.GetString(rest);
                    break;
                }
            }

            pos += 12 + length;
        }

        idat.Position = 0;
        using var inflated = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionMode.Decompress))
        {
            z.CopyTo(inflated);
        }

        byte[] raw = inflated.ToArray();
        int stride = width * 3;
        Assert.Equal(height * (stride + 1), raw.Length);
        var rgb = new byte[height * stride];
        for (int y = 0; y < height; y++)
        {
            byte filter = raw[y * (stride + 1)];
            for (int x = 0; x < stride; x++)
            {
                int a = x >= 3 ? rgb[y * stride + x - 3] : 0;
                int b = y > 0 ? rgb[(y - 1) * stride + x] : 0;
                int c = x >= 3 && y > 0 ? rgb[(y - 1) * stride + x - 3] : 0;
                int f = raw[y * (stride + 1) + 1 + x];
                int value = filter switch
                {
                    0 => f,
                    1 => f + a,
                    2 => f + b,
                    3 => f + ((a + b) >> 1),
                    4 => f + Paeth(a, b, c),
                    _ => throw new InvalidDataException($"filter {filter}"),
                };
                rgb[y * stride + x] = (byte)value;
            }
        }

        return new PngReader(width, height, rgb, text, types);
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static uint ReferenceCrc(ReadOnlySpan<byte> data)
    {
        // Bitwise CRC-32, independent of the table-driven one under test.
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
            }
        }

        return ~crc;
    }
}

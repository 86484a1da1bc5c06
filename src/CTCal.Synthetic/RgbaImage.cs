using System.Runtime.InteropServices;
using SkiaSharp;

namespace CTCal.Synthetic;

/// <summary>
/// An 8-bit RGBA image, row-major, 4 bytes per pixel, no row padding. Owns its pixel array.
/// </summary>
public sealed class RgbaImage
{
    /// <summary>Wraps <paramref name="pixels"/> (not copied) of a <paramref name="width"/> x <paramref name="height"/> image.</summary>
    public RgbaImage(int width, int height, byte[] pixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentNullException.ThrowIfNull(pixels);
        if (pixels.Length != width * height * 4)
            throw new ArgumentException($"pixel buffer holds {pixels.Length} bytes, a {width}x{height} RGBA image needs {width * height * 4}", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>RGBA bytes, row-major.</summary>
    public byte[] Pixels { get; }

    /// <summary>The colour at (<paramref name="x"/>, <paramref name="y"/>), alpha ignored.</summary>
    public Rgb this[int x, int y]
    {
        get
        {
            int i = (y * Width + x) * 4;
            return new Rgb(Pixels[i], Pixels[i + 1], Pixels[i + 2]);
        }
    }

    /// <summary>
    /// An opaque image from planar RGB floats ([3, H, W], channel-major, as a decoder emits), mapping
    /// [<paramref name="low"/>, <paramref name="high"/>] to [0, 255] with clamping and rounding.
    /// </summary>
    public static RgbaImage FromPlanarRgb(int width, int height, ReadOnlySpan<float> chw, float low = -1f, float high = 1f)
    {
        if (chw.Length != 3 * width * height)
            throw new ArgumentException($"planar RGB buffer holds {chw.Length} values, a {width}x{height} image needs {3 * width * height}", nameof(chw));
        if (!(high > low)) throw new ArgumentException($"range [{low}, {high}] is empty", nameof(high));
        int plane = width * height;
        byte[] pixels = new byte[plane * 4];
        for (int i = 0; i < plane; i++)
        {
            for (int c = 0; c < 3; c++)
            {
                float v = (chw[c * plane + i] - low) / (high - low);
                pixels[i * 4 + c] = (byte)MathF.Round(Math.Clamp(float.IsNaN(v) ? 0f : v, 0f, 1f) * 255f);
            }
            pixels[i * 4 + 3] = 255;
        }
        return new RgbaImage(width, height, pixels);
    }

    /// <summary>Planar RGB floats ([3, H, W]) with [0, 255] mapped to [<paramref name="low"/>, <paramref name="high"/>]; alpha dropped.</summary>
    public float[] ToPlanarRgb(float low = -1f, float high = 1f)
    {
        int plane = Width * Height;
        var chw = new float[3 * plane];
        for (int i = 0; i < plane; i++)
        {
            for (int c = 0; c < 3; c++) chw[c * plane + i] = low + (high - low) * Pixels[i * 4 + c] / 255f;
        }
        return chw;
    }

    /// <summary>
    /// A copy with independent Gaussian noise of standard deviation <paramref name="sigma"/> (on the [0, 1] scale)
    /// added to each RGB channel, clamped to [0, 1] and rounded back to 8 bits; deterministic for <paramref name="seed"/>.
    /// </summary>
    public RgbaImage WithGaussianNoise(double sigma, ulong seed)
    {
        var rng = new SeededRandom(seed);
        byte[] dst = (byte[])Pixels.Clone();
        for (int i = 0; i < dst.Length; i++)
        {
            if (i % 4 == 3) continue;
            double v = dst[i] / 255.0 + sigma * rng.NextGaussian();
            dst[i] = (byte)Math.Round(Math.Clamp(v, 0, 1) * 255);
        }
        return new RgbaImage(Width, Height, dst);
    }

    /// <summary>Encodes as PNG (8-bit RGBA).</summary>
    public byte[] EncodePng()
    {
        using var bitmap = new SKBitmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        Marshal.Copy(Pixels, 0, bitmap.GetPixels(), Pixels.Length);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new InvalidOperationException($"PNG encoding of a {Width}x{Height} image failed");
        return data.ToArray();
    }

    /// <summary>
    /// Largest image <see cref="Decode"/> accepts, in pixels (4096 x 4096, a 64 MiB RGBA buffer): a few header bytes can
    /// declare a gigapixel image, whose buffer size would overflow or exhaust memory.
    /// </summary>
    public const long MaxDecodedPixels = 4096L * 4096;

    /// <summary>Decodes a PNG (or any format Skia reads); <paramref name="source"/> names the data in errors.</summary>
    /// <exception cref="InvalidDataException">not a decodable image, larger than <see cref="MaxDecodedPixels"/>, or decoding failed.</exception>
    public static RgbaImage Decode(byte[] encoded, string source = "image")
    {
        ArgumentNullException.ThrowIfNull(encoded);
        // SKData keeps the bytes native: a managed Stream would let a header offset (a BMP's data offset, say) make
        // SkiaSharp's stream adapter allocate a managed buffer of that many bytes to skip over.
        using var data = SKData.CreateCopy(encoded);
        using var codec = SKCodec.Create(data)
            ?? throw new InvalidDataException($"{source}: not a decodable image");
        int width = codec.Info.Width, height = codec.Info.Height;
        if (width <= 0 || height <= 0 || (long)width * height > MaxDecodedPixels)
            throw new InvalidDataException($"{source}: a {width}x{height} image is outside the decodable size (1 to {MaxDecodedPixels} pixels)");
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        byte[] pixels = new byte[info.Width * info.Height * 4];
        var handle = GCHandle.Alloc(pixels, GCHandleType.Pinned);
        try
        {
            var result = codec.GetPixels(info, handle.AddrOfPinnedObject());
            if (result is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
                throw new InvalidDataException($"{source}: decoding failed ({result})");
        }
        finally
        {
            handle.Free();
        }
        return new RgbaImage(info.Width, info.Height, pixels);
    }

    /// <summary>Reads and decodes an image file.</summary>
    public static RgbaImage Load(string path) => Decode(File.ReadAllBytes(path), path);
}

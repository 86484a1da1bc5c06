using CTCal.Core.IO;
using SkiaSharp;

namespace CTCal.Trainer.Data;

/// <summary>Decodes images with SkiaSharp and turns them into training pixels.</summary>
public static class ImageLoader
{
    /// <summary>
    /// Decodes <paramref name="path"/>, scales it so the shorter side is <paramref name="resolution"/> (Mitchell cubic),
    /// crops the centre square and returns CHW RGB floats in [-1, 1] (length 3·R·R). Alpha is ignored.
    /// Throws <see cref="InvalidDataException"/> naming the file when it cannot be decoded.
    /// </summary>
    public static float[] LoadCentreCrop(string path, int resolution)
    {
        if (resolution <= 0) throw new ArgumentOutOfRangeException(nameof(resolution), resolution, "resolution must be positive");
        using var decoded = DecodeComplete(path);

        double scale = (double)resolution / Math.Min(decoded.Width, decoded.Height);
        int width = Math.Max(resolution, (int)Math.Round(decoded.Width * scale));
        int height = Math.Max(resolution, (int)Math.Round(decoded.Height * scale));
        using var resized = width == decoded.Width && height == decoded.Height
            ? decoded.Copy()
            : decoded.Resize(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul), new SKSamplingOptions(SKCubicResampler.Mitchell))
              ?? throw new InvalidDataException($"{path}: could not be resized to {width}x{height}");
        int left = (width - resolution) / 2, top = (height - resolution) / 2;

        var pixels = resized.GetPixelSpan();
        int rowBytes = resized.RowBytes;
        int plane = resolution * resolution;
        var result = new float[3 * plane];
        for (int y = 0; y < resolution; y++)
        {
            int row = (y + top) * rowBytes;
            for (int x = 0; x < resolution; x++)
            {
                int p = row + (x + left) * 4;
                int o = y * resolution + x;
                result[o] = pixels[p] / 127.5f - 1f;
                result[plane + o] = pixels[p + 1] / 127.5f - 1f;
                result[2 * plane + o] = pixels[p + 2] / 127.5f - 1f;
            }
        }
        return result;
    }

    /// <summary>Largest image decoded (pixels): 8192 x 8192. A larger one is refused before its pixels are allocated.</summary>
    public const long MaxPixels = 8192L * 8192;

    /// <summary>
    /// Decodes every pixel of <paramref name="path"/> as RGBA. An image the decoder can only partly read (a truncated or
    /// corrupt file: Skia's <c>IncompleteInput</c> / <c>ErrorInInput</c>, which <c>SKBitmap.Decode</c> accepts and fills with
    /// blank rows) is refused, as are empty images and images over <see cref="MaxPixels"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">naming the file and what is wrong with it.</exception>
    public static SKBitmap DecodeComplete(string path)
    {
        using var codec = SKCodec.Create(path) ?? throw new InvalidDataException($"{path}: not a decodable image");
        int width = codec.Info.Width, height = codec.Info.Height;
        if (width <= 0 || height <= 0) throw new InvalidDataException($"{path}: empty image ({width}x{height})");
        if ((long)width * height > MaxPixels)
            throw new InvalidDataException($"{path}: {width}x{height} is larger than the {MaxPixels / 1_000_000} megapixels this trainer decodes");
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var bitmap = new SKBitmap(info);
        try
        {
            var result = codec.GetPixels(info, bitmap.GetPixels());
            if (result != SKCodecResult.Success)
                throw new InvalidDataException(result == SKCodecResult.IncompleteInput
                    ? $"{path}: image data is truncated (only part of the {width}x{height} image could be decoded)"
                    : $"{path}: image data is corrupt ({result})");
            return bitmap;
        }
        catch
        {
            bitmap.Dispose();
            throw;
        }
    }

    /// <summary>Writes CHW floats in [-1, 1] ([3, H, W]) as a PNG, atomically (<see cref="AtomicFile"/>).</summary>
    public static void SavePng(ReadOnlySpan<float> chw, int width, int height, string path)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var pixels = bitmap.GetPixelSpan();
        int plane = width * height;
        for (int i = 0; i < plane; i++)
        {
            int y = i / width, x = i % width;
            int p = y * bitmap.RowBytes + x * 4;
            for (int c = 0; c < 3; c++)
                pixels[p + c] = (byte)Math.Clamp((int)Math.Round((chw[c * plane + i] + 1f) * 127.5f), 0, 255);
            pixels[p + 3] = 255;
        }
        AtomicFile.Write(path, stream =>
        {
            if (!bitmap.Encode(stream, SKEncodedImageFormat.Png, 100)) throw new IOException($"{path}: PNG encoding failed");
        });
    }
}

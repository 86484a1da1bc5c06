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
        using var codec = SKCodec.Create(path) ?? throw new InvalidDataException($"{path}: not a decodable image");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var decoded = SKBitmap.Decode(codec, info) ?? throw new InvalidDataException($"{path}: image data is corrupt or truncated");
        if (decoded.Width <= 0 || decoded.Height <= 0) throw new InvalidDataException($"{path}: empty image");

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

    /// <summary>Writes CHW floats in [-1, 1] ([3, H, W]) as a PNG, atomically (temp file + rename).</summary>
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
        string temp = path + ".tmp";
        using (var stream = File.Create(temp))
        {
            if (!bitmap.Encode(stream, SKEncodedImageFormat.Png, 100)) throw new IOException($"{path}: PNG encoding failed");
        }
        File.Move(temp, path, overwrite: true);
    }
}

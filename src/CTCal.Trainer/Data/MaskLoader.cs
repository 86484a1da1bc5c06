namespace CTCal.Trainer.Data;

/// <summary>
/// Reads a subject mask (an 8-bit grayscale PNG, 255 inside the subject, 0 outside; any image Skia decodes, its first
/// channel read) and brings it to a square side the way <see cref="ImageLoader.LoadCentreCrop"/> brings its image: the
/// centre square, then area-averaged (each output pixel the exact mean of the input area it covers, like PyTorch's
/// <c>interpolate(mode="area")</c> for integer ratios) to values in [0, 1].
/// </summary>
public static class MaskLoader
{
    /// <summary>Decodes <paramref name="path"/> and returns its centre square area-averaged to <paramref name="side"/>² values in [0, 1] (row-major).</summary>
    /// <exception cref="InvalidDataException">naming the file when it cannot be decoded.</exception>
    public static float[] Load(string path, int side)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(side);
        using var bitmap = ImageLoader.DecodeComplete(path);
        int width = bitmap.Width, height = bitmap.Height, square = Math.Min(width, height);
        int left = (width - square) / 2, top = (height - square) / 2;
        var pixels = bitmap.GetPixelSpan();
        var values = new float[square * square];
        for (int y = 0; y < square; y++)
        {
            int row = (y + top) * bitmap.RowBytes;
            for (int x = 0; x < square; x++) values[y * square + x] = pixels[row + (x + left) * 4] / 255f;
        }
        return AreaResize(values, square, side);
    }

    /// <summary>The (width, height) of the image at <paramref name="path"/>, read from its header.</summary>
    public static (int Width, int Height) Size(string path)
    {
        using var codec = SkiaSharp.SKCodec.Create(path) ?? throw new InvalidDataException($"{path}: not a decodable image");
        return (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>
    /// Area-averages a square <paramref name="source"/> (<paramref name="sourceSide"/>², row-major) to
    /// <paramref name="side"/>²: output pixel (i, j) is the mean of the source over [i·s, (i+1)·s) x [j·s, (j+1)·s),
    /// s = sourceSide / side, partial source pixels weighted by their overlap (so enlarging repeats pixels).
    /// </summary>
    public static float[] AreaResize(float[] source, int sourceSide, int side)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Length != sourceSide * sourceSide) throw new ArgumentException($"{source.Length} values are not a {sourceSide}x{sourceSide} square", nameof(source));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(side);
        double scale = (double)sourceSide / side;
        var spans = new (int First, double[] Weights)[side];
        for (int i = 0; i < side; i++)
        {
            double start = i * scale, end = (i + 1) * scale;
            int first = (int)Math.Floor(start), last = Math.Min(sourceSide - 1, (int)Math.Ceiling(end) - 1);
            var weights = new double[last - first + 1];
            for (int k = first; k <= last; k++) weights[k - first] = (Math.Min(end, k + 1) - Math.Max(start, k)) / scale;
            spans[i] = (first, weights);
        }
        var result = new float[side * side];
        for (int i = 0; i < side; i++)
        {
            var (fy, wy) = spans[i];
            for (int j = 0; j < side; j++)
            {
                var (fx, wx) = spans[j];
                double sum = 0;
                for (int a = 0; a < wy.Length; a++)
                {
                    int row = (fy + a) * sourceSide + fx;
                    double rowSum = 0;
                    for (int b = 0; b < wx.Length; b++) rowSum += wx[b] * source[row + b];
                    sum += wy[a] * rowSum;
                }
                result[i * side + j] = (float)sum;
            }
        }
        return result;
    }
}

namespace CTCal.Synthetic;

/// <summary>How well each shape's template explains one object: the best sum of squared differences per shape.</summary>
public sealed record ShapeFit(ShapeKind Best, IReadOnlyList<double> Errors, double BestSize, double BestBlur)
{
    /// <summary>Runner-up error over best error, minus 1 (0: a tie; larger: a clearer decision).</summary>
    public double Margin
    {
        get
        {
            double best = Errors[(int)Best];
            double second = Errors.Where((_, i) => i != (int)Best).Min();
            return best <= 0 ? double.PositiveInfinity : second / best - 1;
        }
    }
}

/// <summary>
/// Template matching of an object's soft ink map against the world's four shapes, as they are drawn
/// (<see cref="Shapes.Polygon"/>, circles of diameter s; placed by area centroid) and then blurred: for each shape the
/// anti-aliased coverage (3x3 supersampled) at the object's centroid, at sizes around the one whose area equals the
/// object's pixel count, blurred with a Gaussian of each candidate width (the scorer's own 3x3 binomial smoothing plus an
/// unknown decoder blur), is compared with the ink map by the sum of squared differences; the shape with the smallest
/// error wins. Unlike thresholds on features of the binarised component, this uses the grey levels a blurred small star
/// keeps between its points, so a VAE-decoded star of 12 px still fits the star template better than a disc.
/// </summary>
public static class ShapeTemplateFit
{
    /// <summary>Template size, as a share of the area-matched size, tried for every shape.</summary>
    public static IReadOnlyList<double> SizeFactors { get; } = [0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2];

    /// <summary>Extra Gaussian blur (σ in pixels) on top of the 3x3 binomial smoothing (variance 0.5 per axis).</summary>
    public static IReadOnlyList<double> ExtraBlurs { get; } = [0, 0.8, 1.4];

    /// <summary>Corner rounding (σ in pixels of a blur that is then re-sharpened), as a decoder rounds small shapes while
    /// keeping their colour saturated (a 12-14 px star comes back as a rounded pentagon, which the stronger rounding
    /// fits better than a disc or a square); 0: the sharp shape.</summary>
    public static IReadOnlyList<double> Roundings { get; } = [0, 1.2, 1.8];

    private const float RoundingGain = 3f;
    private const int Supersample = 3;

    /// <summary>Area of a shape of nominal size 1.</summary>
    public static double UnitArea(ShapeKind shape)
    {
        if (shape == ShapeKind.Circle) return Math.PI / 4;
        var p = Shapes.Polygon(shape, 0, 0, 1);
        double twice = 0;
        for (int i = 0; i < p.Length; i++)
        {
            var (a, b) = (p[i], p[(i + 1) % p.Length]);
            twice += a.X * b.Y - b.X * a.Y;
        }
        return Math.Abs(twice) / 2;
    }

    /// <summary>
    /// Fits the four shapes to <paramref name="ink"/> (row-major, <paramref name="width"/> wide, values in [0, 1]; 0 outside
    /// the object) over the box <paramref name="minX"/>..<paramref name="maxX"/> x <paramref name="minY"/>..<paramref name="maxY"/>
    /// (inclusive pixel indices), with the templates centred at (<paramref name="cx"/>, <paramref name="cy"/>) and sized from
    /// <paramref name="area"/> pixels.
    /// </summary>
    public static ShapeFit Fit(float[] ink, int width, int minX, int minY, int maxX, int maxY, double cx, double cy, double area)
    {
        int bw = maxX - minX + 1, bh = maxY - minY + 1;
        var errors = new double[Shapes.All.Count];
        Array.Fill(errors, double.PositiveInfinity);
        double bestSize = 0, bestBlur = 0;
        var coverage = new float[bw * bh];
        var blurred = new float[bw * bh];
        var tmp = new float[bw * bh];
        var rounded = new float[bw * bh];
        foreach (var shape in Shapes.All)
        {
            double s0 = Math.Sqrt(area / UnitArea(shape));
            foreach (double f in SizeFactors)
            {
                double size = s0 * f;
                Render(shape, cx - minX, cy - minY, size, coverage, bw, bh);
                foreach (double rounding in Roundings)
                {
                  if (rounding > 0)
                  {
                      Blur(coverage, rounded, tmp, bw, bh, rounding);
                      for (int i = 0; i < rounded.Length; i++) rounded[i] = Math.Clamp((rounded[i] - 0.5f) * RoundingGain + 0.5f, 0f, 1f);
                  }
                  else Array.Copy(coverage, rounded, coverage.Length);
                  foreach (double extra in ExtraBlurs)
                  {
                    Blur(rounded, blurred, tmp, bw, bh, Math.Sqrt(0.5 + extra * extra));
                    double e = 0;
                    for (int y = 0; y < bh; y++)
                    {
                        int row = (minY + y) * width + minX;
                        for (int x = 0; x < bw; x++)
                        {
                            double d = ink[row + x] - blurred[y * bw + x];
                            e += d * d;
                        }
                    }
                    if (e < errors[(int)shape])
                    {
                        errors[(int)shape] = e;
                        if (e <= errors.Min()) (bestSize, bestBlur) = (size, extra);
                    }
                  }
                }
            }
        }
        int best = Array.IndexOf(errors, errors.Min());
        return new ShapeFit((ShapeKind)best, errors, bestSize, bestBlur);
    }

    /// <summary>Coverage of <paramref name="shape"/> per pixel of a <paramref name="w"/> x <paramref name="h"/> box (3x3 samples).</summary>
    private static void Render(ShapeKind shape, double cx, double cy, double size, float[] coverage, int w, int h)
    {
        Point2[]? poly = shape == ShapeKind.Circle ? null : Shapes.Polygon(shape, cx, cy, size);
        double r2 = size * size / 4;
        const float weight = 1f / (Supersample * Supersample);
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                float c = 0;
                for (int j = 0; j < Supersample; j++)
                {
                    double py = y + (j + 0.5) / Supersample;
                    for (int i = 0; i < Supersample; i++)
                    {
                        double px = x + (i + 0.5) / Supersample;
                        bool inside = poly is null ? (px - cx) * (px - cx) + (py - cy) * (py - cy) <= r2 : Inside(poly, px, py);
                        if (inside) c += weight;
                    }
                }
                coverage[y * w + x] = c;
            }
        }
    }

    /// <summary>Even-odd rule (crossing number).</summary>
    private static bool Inside(Point2[] poly, double x, double y)
    {
        bool inside = false;
        for (int i = 0, j = poly.Length - 1; i < poly.Length; j = i++)
        {
            if ((poly[i].Y > y) != (poly[j].Y > y) && x < (poly[j].X - poly[i].X) * (y - poly[i].Y) / (poly[j].Y - poly[i].Y) + poly[i].X)
                inside = !inside;
        }
        return inside;
    }

    /// <summary>Separable Gaussian blur (σ <paramref name="sigma"/>, radius ⌈3σ⌉), zero outside the box.</summary>
    private static void Blur(float[] src, float[] dst, float[] tmp, int w, int h, double sigma)
    {
        int radius = (int)Math.Ceiling(3 * sigma);
        var k = new float[2 * radius + 1];
        double sum = 0;
        for (int i = -radius; i <= radius; i++) sum += k[i + radius] = (float)Math.Exp(-i * i / (2 * sigma * sigma));
        for (int i = 0; i < k.Length; i++) k[i] /= (float)sum;
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                float a = 0;
                for (int i = Math.Max(-radius, -x); i <= Math.Min(radius, w - 1 - x); i++) a += k[i + radius] * src[y * w + x + i];
                tmp[y * w + x] = a;
            }
        }
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                float a = 0;
                for (int i = Math.Max(-radius, -y); i <= Math.Min(radius, h - 1 - y); i++) a += k[i + radius] * tmp[(y + i) * w + x];
                dst[y * w + x] = a;
            }
        }
    }
}

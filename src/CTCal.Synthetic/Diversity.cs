namespace CTCal.Synthetic;

/// <summary>How varied a set of images of one prompt (different seeds) is.</summary>
/// <param name="ImageCount">Number of images measured.</param>
/// <param name="LayoutSpread">RMS spread of object centroids across images, as a share of the image side (see <see cref="Diversity"/>).</param>
/// <param name="MeanPixelDistance">Mean pairwise RMS pixel distance on the [0, 1] scale.</param>
public sealed record DiversityScore(int ImageCount, double LayoutSpread, double MeanPixelDistance);

/// <summary>
/// Diversity of a set of N images generated for one prompt (attention supervision is criticised for collapsing
/// layouts, so this is reported beside the accuracy scores).
/// <para>Layout spread: for each colour-shape kind k detected in at least two images, let p_ik be the mean centroid
/// of its instances in image i, in units of the image side. spread_k = sqrt(mean_i |p_ik − mean_i p_ik|²), the RMS
/// distance of those centroids from their mean; LayoutSpread is the mean of spread_k over such kinds (0 when none).
/// Identical layouts give 0; centroids uniform over the unit square give about 0.41.</para>
/// <para>Pixel distance: for each pair i &lt; j, d_ij = sqrt(mean over pixels and RGB channels of (a − b)²) with channels
/// on [0, 1]; MeanPixelDistance is the mean of d_ij over the N(N−1)/2 pairs (0 for N &lt; 2).</para>
/// </summary>
public static class Diversity
{
    /// <summary>Measures <paramref name="images"/> (same size); <paramref name="evaluator"/> finds the objects.</summary>
    public static DiversityScore Measure(IReadOnlyList<RgbaImage> images, Evaluator evaluator)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(evaluator);
        for (int i = 1; i < images.Count; i++)
        {
            if (images[i].Width != images[0].Width || images[i].Height != images[0].Height)
                throw new ArgumentException($"image {i} is {images[i].Width}x{images[i].Height}, image 0 is {images[0].Width}x{images[0].Height}", nameof(images));
        }
        return new DiversityScore(images.Count, LayoutSpread(images, evaluator), MeanPixelDistance(images));
    }

    private static double LayoutSpread(IReadOnlyList<RgbaImage> images, Evaluator evaluator)
    {
        var perKind = new Dictionary<(ShapeColor, ShapeKind), List<(double X, double Y)>>();
        foreach (var image in images)
        {
            double side = Math.Max(image.Width, image.Height);
            foreach (var g in evaluator.Detect(image).GroupBy(d => (d.Color, d.Shape)))
            {
                if (!perKind.TryGetValue(g.Key, out var list)) perKind[g.Key] = list = [];
                list.Add((g.Average(d => d.X) / side, g.Average(d => d.Y) / side));
            }
        }
        var spreads = perKind.Values.Where(l => l.Count >= 2).Select(l =>
        {
            double mx = l.Average(p => p.X), my = l.Average(p => p.Y);
            return Math.Sqrt(l.Average(p => (p.X - mx) * (p.X - mx) + (p.Y - my) * (p.Y - my)));
        }).ToArray();
        return spreads.Length == 0 ? 0 : spreads.Average();
    }

    private static double MeanPixelDistance(IReadOnlyList<RgbaImage> images)
    {
        if (images.Count < 2) return 0;
        double total = 0;
        int pairs = 0;
        for (int i = 0; i < images.Count; i++)
        {
            for (int j = i + 1; j < images.Count; j++, pairs++)
            {
                byte[] a = images[i].Pixels, b = images[j].Pixels;
                double sum = 0;
                for (int p = 0; p < a.Length; p++)
                {
                    if (p % 4 == 3) continue;
                    double d = (a[p] - b[p]) / 255.0;
                    sum += d * d;
                }
                total += Math.Sqrt(sum / (a.Length / 4 * 3));
            }
        }
        return total / pairs;
    }
}

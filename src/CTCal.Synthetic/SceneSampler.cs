namespace CTCal.Synthetic;

/// <summary>
/// Samples concrete layouts for a <see cref="SceneSpec"/>: object sizes, then positions by rejection so that objects
/// lie inside the canvas (1 px margin), keep a gap of max(3 px, 7% of the canvas) between bounding boxes, and, for
/// spatial specs, satisfy the relation clearly (centroids at least 20% of the canvas apart along the relation's axis
/// and at least twice as far apart along it as across it).
/// </summary>
public sealed class SceneSampler
{
    private const double Margin = 1.0;
    private const int Attempts = 4000;

    /// <summary>Smallest nominal object size in pixels: below it a star no longer reads as a star.</summary>
    public const double MinObjectPixels = 12;

    /// <summary>Creates a sampler for a square canvas of <paramref name="imageSize"/> pixels (at least 16).</summary>
    public SceneSampler(int imageSize)
    {
        if (imageSize < 16) throw new ArgumentOutOfRangeException(nameof(imageSize), imageSize, "image size must be at least 16 pixels");
        ImageSize = imageSize;
    }

    /// <summary>Canvas side in pixels.</summary>
    public int ImageSize { get; }

    /// <summary>Smallest gap between object bounding boxes, pixels.</summary>
    public double Gap => Math.Max(3.0, 0.07 * ImageSize);

    /// <summary>
    /// Range of the nominal object size, as a fraction of the canvas, for scenes of <paramref name="objectCount"/>
    /// objects; sizes never go below <see cref="MinObjectPixels"/> unless the objects would not fit.
    /// </summary>
    public static (double Min, double Max) SizeRange(int objectCount) => objectCount switch
    {
        1 => (0.30, 0.50),
        2 => (0.24, 0.36),
        _ => (0.20, 0.30),
    };

    /// <summary>A layout matching <paramref name="spec"/>, drawn from <paramref name="rng"/>.</summary>
    public Scene Sample(SceneSpec spec, SeededRandom rng)
    {
        var wanted = spec.Objects.SelectMany(o => Enumerable.Repeat((o.Color, o.Shape), o.Count)).ToArray();
        var (minFrac, maxFrac) = SizeRange(wanted.Length);
        double minSize = Math.Max(minFrac * ImageSize, MinObjectPixels), maxSize = Math.Max(maxFrac * ImageSize, minSize);
        for (int round = 0; round < 8; round++, minSize *= 0.9, maxSize *= 0.9)
        {
            for (int attempt = 0; attempt < Attempts; attempt++)
            {
                var placed = new List<SceneObject>(wanted.Length);
                foreach (var (color, shape) in wanted)
                {
                    double size = rng.NextDouble(minSize, maxSize);
                    var rel = Shapes.Bounds(shape, 0, 0, size);
                    double x = rng.NextDouble(Margin - rel.MinX, ImageSize - Margin - rel.MaxX);
                    double y = rng.NextDouble(Margin - rel.MinY, ImageSize - Margin - rel.MaxY);
                    var obj = new SceneObject(color, shape, x, y, size);
                    if (placed.Any(p => p.Bounds.Near(obj.Bounds, Gap))) break;
                    placed.Add(obj);
                }
                if (placed.Count == wanted.Length && (spec.Relation is not { } r || Satisfies(placed[0], r, placed[1])))
                    return new Scene(ImageSize, ImageSize, placed);
            }
        }
        throw new InvalidOperationException($"could not place {spec} on a {ImageSize}x{ImageSize} canvas");
    }

    private bool Satisfies(SceneObject a, SpatialRelation relation, SceneObject b)
    {
        double dx = b.X - a.X, dy = b.Y - a.Y; // a LeftOf b  <=> dx > 0
        double along = relation switch
        {
            SpatialRelation.LeftOf => dx,
            SpatialRelation.RightOf => -dx,
            SpatialRelation.Above => dy,
            _ => -dy,
        };
        double across = relation is SpatialRelation.LeftOf or SpatialRelation.RightOf ? Math.Abs(dy) : Math.Abs(dx);
        return along >= 0.2 * ImageSize && along >= 2 * across;
    }
}

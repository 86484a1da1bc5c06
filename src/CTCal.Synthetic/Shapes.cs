namespace CTCal.Synthetic;

/// <summary>The object shapes of the synthetic world (caption nouns are the lower-case names).</summary>
public enum ShapeKind { Circle, Square, Triangle, Star }

/// <summary>A 2D point in pixel coordinates (x to the right, y down).</summary>
public readonly record struct Point2(double X, double Y);

/// <summary>An axis-aligned box in pixel coordinates.</summary>
public readonly record struct Box(double MinX, double MinY, double MaxX, double MaxY)
{
    /// <summary>Whether the boxes, each grown by <paramref name="gap"/>/2 on every side, intersect.</summary>
    public bool Near(Box other, double gap) =>
        MinX - gap < other.MaxX && other.MinX - gap < MaxX && MinY - gap < other.MaxY && other.MinY - gap < MaxY;
}

/// <summary>
/// Shape geometry and words. Every shape is upright and placed by its area centroid and a nominal size s:
/// circle of diameter s; square of side 0.85 s; equilateral triangle of side s, apex up; five-pointed star, point up,
/// outer radius 0.56 s and inner radius half of that.
/// </summary>
public static class Shapes
{
    /// <summary>All shapes, in enum order.</summary>
    public static IReadOnlyList<ShapeKind> All { get; } = Enum.GetValues<ShapeKind>();

    /// <summary>Square side as a fraction of the nominal size.</summary>
    public const double SquareSide = 0.85;

    /// <summary>Star outer radius as a fraction of the nominal size.</summary>
    public const double StarOuterRadius = 0.56;

    /// <summary>Star inner radius as a fraction of its outer radius.</summary>
    public const double StarInnerRatio = 0.5;

    /// <summary>The singular caption noun ("circle").</summary>
    public static string Noun(ShapeKind shape) => shape.ToString().ToLowerInvariant();

    /// <summary>The plural caption noun ("circles").</summary>
    public static string PluralNoun(ShapeKind shape) => Noun(shape) + "s";

    /// <summary>Parses a singular or plural noun; throws naming the word when it is not a shape.</summary>
    public static ShapeKind Parse(string word)
    {
        foreach (var s in All)
        {
            if (Noun(s) == word || PluralNoun(s) == word) return s;
        }
        throw new FormatException($"'{word}' is not a shape noun (expected one of {string.Join(", ", All.Select(Noun))})");
    }

    /// <summary>
    /// The outline of a polygonal shape centred (by area centroid) at (<paramref name="cx"/>, <paramref name="cy"/>);
    /// throws for <see cref="ShapeKind.Circle"/>, which has no vertices.
    /// </summary>
    public static Point2[] Polygon(ShapeKind shape, double cx, double cy, double size)
    {
        switch (shape)
        {
            case ShapeKind.Square:
            {
                double h = SquareSide * size / 2;
                return [new(cx - h, cy - h), new(cx + h, cy - h), new(cx + h, cy + h), new(cx - h, cy + h)];
            }
            case ShapeKind.Triangle:
            {
                double height = size * Math.Sqrt(3) / 2;
                return [new(cx, cy - 2 * height / 3), new(cx + size / 2, cy + height / 3), new(cx - size / 2, cy + height / 3)];
            }
            case ShapeKind.Star:
            {
                double outer = StarOuterRadius * size, inner = outer * StarInnerRatio;
                var pts = new Point2[10];
                for (int i = 0; i < 10; i++)
                {
                    double angle = -Math.PI / 2 + i * Math.PI / 5;
                    double r = i % 2 == 0 ? outer : inner;
                    pts[i] = new Point2(cx + r * Math.Cos(angle), cy + r * Math.Sin(angle));
                }
                return pts;
            }
            default:
                throw new ArgumentException($"{shape} has no polygon outline", nameof(shape));
        }
    }

    /// <summary>The exact axis-aligned bounds of a shape.</summary>
    public static Box Bounds(ShapeKind shape, double cx, double cy, double size)
    {
        if (shape == ShapeKind.Circle) return new Box(cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2);
        var pts = Polygon(shape, cx, cy, size);
        return new Box(pts.Min(p => p.X), pts.Min(p => p.Y), pts.Max(p => p.X), pts.Max(p => p.Y));
    }
}

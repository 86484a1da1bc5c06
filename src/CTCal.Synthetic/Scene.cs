namespace CTCal.Synthetic;

/// <summary>One drawn object: colour, shape, area centroid (pixels, x right, y down) and nominal size (pixels).</summary>
public sealed record SceneObject(ShapeColor Color, ShapeKind Shape, double X, double Y, double Size)
{
    /// <summary>The exact axis-aligned bounds of the drawn shape.</summary>
    public Box Bounds => Shapes.Bounds(Shape, X, Y, Size);
}

/// <summary>A concrete layout: canvas size and the objects drawn on the plain background.</summary>
public sealed record Scene(int Width, int Height, IReadOnlyList<SceneObject> Objects);

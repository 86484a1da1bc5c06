using Xunit;

namespace CTCal.Synthetic.Tests;

/// <summary>Detection of single, known objects and the relation rule.</summary>
public sealed class ScorerBasicsTests
{
    private static readonly Evaluator Evaluator = new();

    [Theory]
    [InlineData(ShapeColor.Red, ShapeKind.Circle)]
    [InlineData(ShapeColor.Green, ShapeKind.Square)]
    [InlineData(ShapeColor.Blue, ShapeKind.Triangle)]
    [InlineData(ShapeColor.Yellow, ShapeKind.Star)]
    [InlineData(ShapeColor.Purple, ShapeKind.Star)]
    [InlineData(ShapeColor.Orange, ShapeKind.Triangle)]
    public void DetectsOneObjectWithItsColourShapeAndCentroid(ShapeColor color, ShapeKind shape)
    {
        var image = Renderer.Render(new Scene(64, 64, [new SceneObject(color, shape, 30, 34, 24)]));
        var d = Assert.Single(Evaluator.Detect(image));
        Assert.Equal(color, d.Color);
        Assert.Equal(shape, d.Shape);
        Assert.InRange(d.X, 29, 31);
        Assert.InRange(d.Y, 33, 35);
    }

    [Fact]
    public void RelationNeedsMarginAndDominantAxis()
    {
        DetectedObject At(double x, double y) => new(ShapeColor.Red, ShapeKind.Circle, x, y, 100, default, 0.8, 1, 0.5, 0.5, 0);
        Assert.True(Evaluator.Holds(At(10, 30), SpatialRelation.LeftOf, At(40, 30), 64));
        Assert.True(Evaluator.Holds(At(40, 30), SpatialRelation.RightOf, At(10, 30), 64));
        Assert.True(Evaluator.Holds(At(30, 5), SpatialRelation.Above, At(30, 50), 64));
        Assert.True(Evaluator.Holds(At(30, 50), SpatialRelation.Below, At(30, 5), 64));
        Assert.False(Evaluator.Holds(At(30, 30), SpatialRelation.LeftOf, At(31, 30), 64)); // inside the margin
        Assert.False(Evaluator.Holds(At(10, 5), SpatialRelation.LeftOf, At(20, 50), 64)); // mostly above, not left
    }

    [Fact]
    public void PngRoundTripKeepsPixels()
    {
        var image = Renderer.Render(new Scene(48, 32, [new SceneObject(ShapeColor.Orange, ShapeKind.Star, 20, 16, 20)]));
        var back = RgbaImage.Decode(image.EncodePng());
        Assert.Equal(48, back.Width);
        Assert.Equal(32, back.Height);
        Assert.Equal(image.Pixels, back.Pixels);
    }

    [Fact]
    public void DecodeRejectsGarbageNamingTheSource()
    {
        var e = Assert.Throws<InvalidDataException>(() => RgbaImage.Decode([1, 2, 3, 4], "bad.png"));
        Assert.Contains("bad.png", e.Message);
    }
}

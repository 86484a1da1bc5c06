using Xunit;

namespace CTCal.Synthetic.Tests;

public sealed class CaptionGrammarTests
{
    [Fact]
    public void CaptionsReadAsExpected()
    {
        var redCircle = new ObjectSpec(ShapeColor.Red, ShapeKind.Circle);
        var blueSquare = new ObjectSpec(ShapeColor.Blue, ShapeKind.Square);
        Assert.Equal("a red circle and a blue square", CaptionGrammar.Caption(SceneSpec.Binding(redCircle, blueSquare)));
        Assert.Equal("three green triangles", CaptionGrammar.Caption(SceneSpec.Counting(ShapeColor.Green, ShapeKind.Triangle, 3)));
        Assert.Equal("two yellow stars", CaptionGrammar.Caption(SceneSpec.Counting(ShapeColor.Yellow, ShapeKind.Star, 2)));
        var spatial = SceneSpec.Spatial(new ObjectSpec(ShapeColor.Yellow, ShapeKind.Star), SpatialRelation.LeftOf, new ObjectSpec(ShapeColor.Purple, ShapeKind.Square));
        Assert.Equal("a yellow star to the left of a purple square", CaptionGrammar.Caption(spatial));
        Assert.Equal("an orange circle below a red circle", CaptionGrammar.Caption(
            SceneSpec.Spatial(new ObjectSpec(ShapeColor.Orange, ShapeKind.Circle), SpatialRelation.Below, redCircle)));
        Assert.Equal(["star", "square"], CaptionGrammar.Subjects(spatial));
        Assert.Equal(["triangles"], CaptionGrammar.Subjects(SceneSpec.Counting(ShapeColor.Green, ShapeKind.Triangle, 3)));
    }

    [Fact]
    public void EveryPromptParsesBackAndVariantsShareAKey()
    {
        var groups = SyntheticWorld.EnumerateGroups();
        foreach (var group in groups)
        {
            foreach (var spec in group)
            {
                string caption = CaptionGrammar.Caption(spec);
                Assert.Equal(spec, CaptionGrammar.Parse(caption));
                Assert.Equal(group[0].CanonicalKey, spec.CanonicalKey);
                Assert.All(CaptionGrammar.Subjects(spec), s => Assert.Contains(s, caption.Split(' ')));
            }
        }
        Assert.Equal(groups.Count, groups.Select(g => g[0].CanonicalKey).Distinct().Count());
        Assert.Equal(groups.Sum(g => g.Length), groups.SelectMany(g => g).Select(CaptionGrammar.Caption).Distinct().Count());
    }

    [Theory]
    [InlineData("a red circle and")]
    [InlineData("a pink circle")]
    [InlineData("four red circles")]
    [InlineData("a red circles")]
    [InlineData("a red circle and a red square")]
    [InlineData("a red circle near a blue square")]
    [InlineData("")]
    public void BadCaptionsAreRefusedNamingTheCaption(string caption)
    {
        var e = Assert.Throws<FormatException>(() => CaptionGrammar.Parse(caption));
        Assert.Contains($"'{caption}'", e.Message);
    }
}

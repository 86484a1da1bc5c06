using Xunit;

namespace CTCal.Synthetic.Tests;

public sealed class SceneSamplerTests
{
    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    public void LayoutsAreInsideSeparatedAndMatchTheSpec(int size)
    {
        var sampler = new SceneSampler(size);
        var rng = new SeededRandom(21);
        var groups = SyntheticWorld.EnumerateGroups();
        for (int i = 0; i < 300; i++)
        {
            var group = groups[rng.NextInt(groups.Count)];
            var spec = group[rng.NextInt(group.Length)];
            var scene = sampler.Sample(spec, rng);
            Assert.Equal(spec.ObjectCount, scene.Objects.Count);
            Assert.Equal(spec.Objects.SelectMany(o => Enumerable.Repeat((o.Color, o.Shape), o.Count)), scene.Objects.Select(o => (o.Color, o.Shape)));
            foreach (var o in scene.Objects)
            {
                var b = o.Bounds;
                Assert.True(b.MinX >= 1 && b.MinY >= 1 && b.MaxX <= size - 1 && b.MaxY <= size - 1, $"{o} leaves the {size}px canvas");
            }
            for (int a = 0; a < scene.Objects.Count; a++)
            {
                for (int c = a + 1; c < scene.Objects.Count; c++)
                    Assert.False(scene.Objects[a].Bounds.Near(scene.Objects[c].Bounds, sampler.Gap), $"{scene.Objects[a]} and {scene.Objects[c]} too close");
            }
            if (spec.Relation is { } r)
            {
                var (p, q) = (scene.Objects[0], scene.Objects[1]);
                bool holds = r switch
                {
                    SpatialRelation.LeftOf => p.X < q.X,
                    SpatialRelation.RightOf => p.X > q.X,
                    SpatialRelation.Above => p.Y < q.Y,
                    _ => p.Y > q.Y,
                };
                Assert.True(holds, $"{CaptionGrammar.Caption(spec)}: {p} vs {q}");
            }
        }
    }

    [Fact]
    public void SmallCanvasIsRefused() => Assert.Throws<ArgumentOutOfRangeException>(() => new SceneSampler(8));
}

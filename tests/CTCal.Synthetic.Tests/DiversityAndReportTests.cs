using Xunit;

namespace CTCal.Synthetic.Tests;

public sealed class DiversityAndReportTests
{
    private static readonly Evaluator Evaluator = new();

    private static RgbaImage Circle(double x, double y) =>
        Renderer.Render(new Scene(64, 64, [new SceneObject(ShapeColor.Red, ShapeKind.Circle, x, y, 16)]));

    [Fact]
    public void IdenticalImagesHaveZeroDiversity()
    {
        var d = Diversity.Measure([Circle(20, 20), Circle(20, 20), Circle(20, 20)], Evaluator);
        Assert.Equal(3, d.ImageCount);
        Assert.Equal(0, d.LayoutSpread, 9);
        Assert.Equal(0, d.MeanPixelDistance, 9);
    }

    [Fact]
    public void LayoutSpreadIsTheRmsCentroidDistanceInImageSides()
    {
        // Centroids 32 px = half a side apart: each is a quarter side from their mean.
        var d = Diversity.Measure([Circle(16, 32), Circle(48, 32)], Evaluator);
        Assert.Equal(0.25, d.LayoutSpread, 2);
        Assert.True(d.MeanPixelDistance > 0.05, $"pixel distance {d.MeanPixelDistance}");
        var moreSpread = Diversity.Measure([Circle(12, 12), Circle(52, 52), Circle(12, 52), Circle(52, 12)], Evaluator);
        Assert.True(moreSpread.LayoutSpread > d.LayoutSpread);
    }

    [Fact]
    public void DiversityRefusesMixedSizes()
    {
        var small = Renderer.Render(new Scene(32, 32, []));
        Assert.Throws<ArgumentException>(() => Diversity.Measure([Circle(20, 20), small], Evaluator));
    }

    [Fact]
    public void ReportAggregatesPerCategoryAndHeldOutSeparately()
    {
        var red = new ObjectSpec(ShapeColor.Red, ShapeKind.Circle);
        var blue = new ObjectSpec(ShapeColor.Blue, ShapeKind.Square);
        var binding = new EvalPrompt("a red circle", PromptCategory.Binding, SceneSpec.Binding(red), false, ["circle"]);
        var heldOut = new EvalPrompt("a blue square", PromptCategory.Binding, SceneSpec.Binding(blue), true, ["square"]);
        var spatialSpec = SceneSpec.Spatial(red, SpatialRelation.LeftOf, blue);
        var spatial = new EvalPrompt(CaptionGrammar.Caption(spatialSpec), PromptCategory.Spatial, spatialSpec, false, ["circle", "square"]);
        ImageScore S(double? b, double? c, double? s, double o) => new(b, c, s, o, []);
        var report = EvaluationReport.Build(
            [(binding, S(1, null, null, 1)), (binding, S(0, null, null, 0)), (heldOut, S(0, null, null, 0)), (spatial, S(1, null, 0, 0.5))],
            [(binding, new DiversityScore(4, 0.2, 0.1)), (heldOut, new DiversityScore(4, 0.4, 0.3))]);

        Assert.Equal(4, report.All.Total.Count);
        Assert.Equal(3, report.All.Categories[PromptCategory.Binding].Count);
        Assert.Equal(1.0 / 3, report.All.Categories[PromptCategory.Binding].Primary, 9);
        Assert.Equal(0, report.All.Categories[PromptCategory.Spatial].Primary);
        Assert.Equal(0.5, report.All.Categories[PromptCategory.Spatial].Overall);
        Assert.False(report.All.Categories.ContainsKey(PromptCategory.Counting));
        Assert.Equal(3, report.InDistribution.Total.Count);
        Assert.Equal(0.5, report.InDistribution.Categories[PromptCategory.Binding].Primary);
        Assert.Equal(1, report.HeldOut.Total.Count);
        Assert.Equal(0, report.HeldOut.Total.Primary);
        Assert.Equal(0.3, report.All.Diversity!.LayoutSpread, 9);
        Assert.Equal(0.4, report.HeldOut.Diversity!.LayoutSpread, 9);
        Assert.Contains("held-out pairs: n=1", report.ToString());
        Assert.Contains("\"heldOut\"", report.ToJson());
    }
}

public sealed class EvaluateAndConversionTests
{
    [Fact]
    public void RendersOfTheEvalPromptsScorePerfectlyAndVaryAcrossSeeds()
    {
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 8, TrainCount = 0, EvalPromptsPerCategory = 6 });
        var sampler = new SceneSampler(world.Options.ImageSize);
        var generated = world.EvalPrompts.Select((p, i) => (p, (IReadOnlyList<RgbaImage>)Enumerable.Range(0, 4)
            .Select(seed => Renderer.Render(sampler.Sample(p.Spec, SeededRandom.ForStream((ulong)i, (ulong)seed)))).ToArray())).ToList();
        var report = EvaluationReport.Evaluate(new Evaluator(), generated);
        Assert.Equal(world.EvalPrompts.Count * 4, report.All.Total.Count);
        Assert.Equal(1, report.All.Total.Overall);
        Assert.True(report.HeldOut.Total.Count > 0);
        Assert.Equal(world.EvalPrompts.Count, report.All.Diversity!.Prompts);
        Assert.True(report.All.Diversity.LayoutSpread > 0.05, $"layout spread {report.All.Diversity.LayoutSpread}");
        Assert.True(report.All.Diversity.MeanPixelDistance > 0.05, $"pixel distance {report.All.Diversity.MeanPixelDistance}");
    }

    [Fact]
    public void PlanarFloatConversionRoundTrips()
    {
        var image = Renderer.Render(new Scene(32, 32, [new SceneObject(ShapeColor.Blue, ShapeKind.Square, 16, 16, 14)]));
        float[] chw = image.ToPlanarRgb();
        Assert.Equal(3 * 32 * 32, chw.Length);
        Assert.All(chw, v => Assert.InRange(v, -1f, 1f));
        Assert.Equal(image.Pixels, RgbaImage.FromPlanarRgb(32, 32, chw).Pixels);
        Assert.Throws<ArgumentException>(() => RgbaImage.FromPlanarRgb(32, 32, new float[10]));
    }
}

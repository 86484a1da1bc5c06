using CTCal.Synthetic;
using Xunit;

namespace CTCal.MainJob.Tests;

public sealed class AggregationTests
{
    internal static EvalPrompt Prompt(PromptCategory category, bool heldOut) => category switch
    {
        PromptCategory.Binding => new EvalPrompt("a red circle and a blue square", category,
            SceneSpec.Binding(new ObjectSpec(ShapeColor.Red, ShapeKind.Circle), new ObjectSpec(ShapeColor.Blue, ShapeKind.Square)), heldOut, ["circle", "square"]),
        PromptCategory.Counting => new EvalPrompt("two yellow stars", category, SceneSpec.Counting(ShapeColor.Yellow, ShapeKind.Star, 2), heldOut, ["stars"]),
        _ => new EvalPrompt("a red circle to the left of a blue square", category,
            SceneSpec.Spatial(new ObjectSpec(ShapeColor.Red, ShapeKind.Circle), SpatialRelation.LeftOf, new ObjectSpec(ShapeColor.Blue, ShapeKind.Square)), heldOut, ["circle", "square"]),
    };

    internal static ImageScore Score(PromptCategory category, bool pass, bool bindingPass = true) => category switch
    {
        PromptCategory.Binding => new ImageScore(pass ? 1 : 0, null, null, pass ? 1 : 0, []),
        PromptCategory.Counting => new ImageScore(bindingPass ? 1 : 0, pass ? 1 : 0, null, ((bindingPass ? 1 : 0) + (pass ? 1 : 0)) / 2.0, []),
        _ => new ImageScore(bindingPass ? 1 : 0, null, pass ? 1 : 0, ((bindingPass ? 1 : 0) + (pass ? 1 : 0)) / 2.0, []),
    };

    [Fact]
    public void FlattenSplitsCategoriesAndHeldOutPairs()
    {
        var binding = Prompt(PromptCategory.Binding, heldOut: false);
        var bindingHeld = Prompt(PromptCategory.Binding, heldOut: true);
        var counting = Prompt(PromptCategory.Counting, heldOut: false);
        var spatialHeld = Prompt(PromptCategory.Spatial, heldOut: true);
        var scores = new List<(EvalPrompt, ImageScore)>
        {
            (binding, Score(PromptCategory.Binding, true)),
            (binding, Score(PromptCategory.Binding, true)),
            (bindingHeld, Score(PromptCategory.Binding, false)),
            (bindingHeld, Score(PromptCategory.Binding, true)),
            (counting, Score(PromptCategory.Counting, false)), // overall 0.5
            (counting, Score(PromptCategory.Counting, true)),  // overall 1
            (spatialHeld, Score(PromptCategory.Spatial, false, bindingPass: false)), // overall 0
            (spatialHeld, Score(PromptCategory.Spatial, true)), // overall 1
        };
        var m = Metrics.Flatten(EvaluationReport.Build(scores));

        Assert.Equal(3 / 4.0, m["all.binding"], 12);
        Assert.Equal(1.0, m["seen.binding"], 12);
        Assert.Equal(0.5, m["heldout.binding"], 12);
        Assert.Equal(0.5, m["all.counting"], 12);
        Assert.False(m.ContainsKey("heldout.counting")); // no held-out counting prompt
        Assert.Equal(0.5, m["heldout.spatial"], 12);
        Assert.False(m.ContainsKey("seen.spatial"));
        // overall: mean of every image's overall: 1,1,0,1,0.5,1,0,1 -> 5.5/8
        Assert.Equal(5.5 / 8, m["all.overall"], 12);
        Assert.Equal(3.5 / 4, m["seen.overall"], 12);
        Assert.Equal(2.0 / 4, m["heldout.overall"], 12);
        Assert.False(m.ContainsKey(Metrics.DiversityLayout)); // no diversity given
    }

    [Fact]
    public void SeedStatsAreMeanSampleStdMinMax()
    {
        var s = SeedStats.Of([0.2, 0.4, 0.9]);
        Assert.Equal(3, s.N);
        Assert.Equal(0.5, s.Mean, 12);
        Assert.Equal(Math.Sqrt(((0.3 * 0.3) + (0.1 * 0.1) + (0.4 * 0.4)) / 2), s.Std, 12);
        Assert.Equal(0.2, s.Min);
        Assert.Equal(0.9, s.Max);
        var one = SeedStats.Of([0.7]);
        Assert.Equal(0, one.Std);
        Assert.Throws<ArgumentException>(() => SeedStats.Of([]));
    }

    [Fact]
    public void MethodSummaryAggregatesKeyByKeyOverSeeds()
    {
        var models = new[]
        {
            new ModelScores("ctcal-s1", new Dictionary<string, double> { ["all.overall"] = 0.5, ["all.binding"] = 1.0, ["heldout.overall"] = 0.2 }, []),
            new ModelScores("ctcal-s2", new Dictionary<string, double> { ["all.overall"] = 0.7, ["all.binding"] = 0.0 }, []),
        };
        var summary = MethodSummary.Of("ctcal", models);
        Assert.Equal(["ctcal-s1", "ctcal-s2"], summary.Models);
        Assert.Equal(0.6, summary.Metrics["all.overall"].Mean, 12);
        Assert.Equal(Math.Sqrt(0.02), summary.Metrics["all.overall"].Std, 12);
        Assert.Equal(0.5, summary.Metrics["all.binding"].Mean, 12);
        Assert.Equal(0.0, summary.Metrics["all.binding"].Min);
        Assert.Equal(1.0, summary.Metrics["all.binding"].Max);
        Assert.Equal(1, summary.Metrics["heldout.overall"].N); // only one model had it
    }

    [Fact]
    public void VerdictSaysPlainlyWhenCtcalDoesNotWin()
    {
        MethodSummary M(string name, params double[] v) =>
            MethodSummary.Of(name, v.Select((x, i) => new ModelScores($"{name}-s{i}", new Dictionary<string, double> { ["all.overall"] = x }, [])).ToList());

        var win = Verdict.Of(M("ctcal", 0.8, 0.82), M("vanilla", 0.5, 0.52));
        Assert.StartsWith("CTCal beats vanilla", win.Text);
        Assert.Equal(0.3, win.Difference, 12);

        var within = Verdict.Of(M("ctcal", 0.5, 0.7), M("vanilla", 0.5, 0.6));
        Assert.StartsWith("CTCal does not clearly beat vanilla", within.Text);

        var lose = Verdict.Of(M("ctcal", 0.4, 0.4), M("vanilla", 0.5, 0.5));
        Assert.StartsWith("CTCal does not beat vanilla", lose.Text);
        Assert.Contains("40.0% vs 50.0%", lose.Text);

        var missing = Verdict.Of(M("ctcal", 0.4), MethodSummary.Of("vanilla", []), "all.spatial");
        Assert.Contains("no comparison", missing.Text);
    }

    [Fact]
    public void PromptSelectionIsStratifiedAndAlternatesHeldOut()
    {
        var prompts = new List<EvalPrompt>();
        foreach (var c in Enum.GetValues<PromptCategory>())
        {
            for (int i = 0; i < 6; i++)
            {
                prompts.Add(Prompt(c, heldOut: i >= 4)); // 4 seen, 2 held-out per category
            }
        }

        var all = DatasetStage.Select(prompts, null);
        Assert.Equal(prompts.Count, all.Count);

        var three = DatasetStage.Select(prompts, 3);
        Assert.Equal(9, three.Count);
        foreach (var c in Enum.GetValues<PromptCategory>())
        {
            var picked = three.Where(p => p.Prompt.Category == c).ToList();
            Assert.Equal(3, picked.Count);
            Assert.Equal(2, picked.Count(p => p.Prompt.HeldOutPair)); // held-out, seen, held-out
            Assert.True(picked.Select(p => p.Index).SequenceEqual(picked.Select(p => p.Index).Order())); // file order kept
        }

        var many = DatasetStage.Select(prompts, 10); // more than there are
        Assert.Equal(prompts.Count, many.Count);
    }
}

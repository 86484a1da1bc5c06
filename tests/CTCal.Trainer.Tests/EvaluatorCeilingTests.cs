using CTCal.BaseModel;
using CTCal.Synthetic;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Networks;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>
/// The rule-based evaluator on images the shipped base model's VAE can make: ground-truth scenes round-tripped through
/// assets/base-model/vae are still read right (the ceiling), and wrong prompts on them still fail.
/// </summary>
public sealed class EvaluatorCeilingTests
{
    private const int PerCategory = 60;
    private static readonly Lazy<(CeilingCase[] Cases, RgbaImage[] Clean, RgbaImage[] Trips)> Sample = new(() =>
    {
        var options = new CeilingOptions { LayoutsPerEvalPrompt = 1, TrainPerCategory = PerCategory, Seed = 11 };
        var world = SyntheticWorld.Create(options.World);
        var cases = EvaluatorCeiling.Cases(world, options).GroupBy(c => c.Category).SelectMany(g => g.Take(PerCategory)).ToArray();
        var clean = cases.Select(c => Renderer.Render(c.Scene)).ToArray();
        using var vae = PretrainedModels.LoadVae(BaseDiffusionTrainer.ResolveVae(Path.Combine(TestPaths.RepoRoot, "assets", "base-model")));
        return (cases, clean, EvaluatorCeiling.RoundTrip(vae, clean, 60).ToArray());
    });

    private static readonly Evaluator Evaluator = new();

    [Fact]
    public void RoundTripsThroughTheShippedVaeScoreAtLeastTheFloor()
    {
        var (cases, clean, trips) = Sample.Value;
        var report = EvaluatorCeiling.Score("assets/base-model", cases, clean, trips, Evaluator, 0);
        string Failures() => string.Join("\n", report.Failures.Select(f => $"#{f.Index} {f.Prompt}: {string.Join("; ", f.Detected)}"));
        foreach (var c in report.Categories)
        {
            Assert.Equal(PerCategory, c.Scenes);
            Assert.True(c.Clean == 1, $"{c.Category}: clean renders {c.Clean:P1}\n{Failures()}");
            // Measured on 2140 scenes: binding 100%, counting 97.2% (small green triangles that decode blue), spatial 100%.
            const double floor = 0.97;
            Assert.True(c.RoundTrip >= floor, $"{c.Category}: round trips {c.RoundTrip:P1} < {floor:P0}\n{Failures()}");
        }
    }

    [Fact]
    public void WrongPromptsOnRoundTripsStillFail()
    {
        var (cases, _, trips) = Sample.Value;
        int tried = 0, passed = 0;
        var wrongPasses = new List<string>();
        for (int i = 0; i < cases.Length; i++)
        {
            foreach (var wrong in WrongSpecs(cases[i].Spec))
            {
                tried++;
                if (Evaluator.Score(trips[i], wrong).Primary(wrong.Category) == 1)
                {
                    passed++;
                    wrongPasses.Add($"#{i} drawn '{cases[i].Prompt}' passed as '{CaptionGrammar.Caption(wrong)}'");
                }
            }
        }
        Assert.True(tried > 4 * cases.Length, $"only {tried} wrong prompts");
        Assert.True(passed <= 0.02 * tried, $"{passed} of {tried} wrong prompts passed on round trips:\n{string.Join("\n", wrongPasses)}");
    }

    [Fact]
    public void CeilingCommandWritesTheReportAndRefusesBadCounts()
    {
        string dir = TestPaths.NewTempDir("ctcal-ceiling");
        try
        {
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var cli = new TrainerCli(_ => throw new InvalidOperationException("the ceiling loads no trainable model"), stdout, stderr);
            string vae = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
            int code = cli.Run(["base", "ceiling", "--vae", vae, "--out", Path.Combine(dir, "c"), "--layouts", "0", "--train-per-category", "4", "--threads", "1"]);
            Assert.True(code == ExitCodes.Ok, stderr.ToString());
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "c", "ceiling.json")));
            var categories = json.RootElement.GetProperty("report").GetProperty("Categories");
            Assert.Equal(3, categories.GetArrayLength());
            Assert.All(categories.EnumerateArray(), c => Assert.Equal(4, c.GetProperty("Scenes").GetInt32()));
            Assert.Contains("| overall | 12 |", File.ReadAllText(Path.Combine(dir, "c", "ceiling.md")));
            Assert.Contains("ceiling overall: 12 scenes", stdout.ToString());

            Assert.Equal(ExitCodes.BadInput, cli.Run(["base", "ceiling", "--vae", vae, "--out", Path.Combine(dir, "d"), "--layouts", "-1"]));
            Assert.Contains("LayoutsPerEvalPrompt -1", stderr.ToString());
            Assert.False(Directory.Exists(Path.Combine(dir, "d")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The spec with one word changed: the first object's colour (to each unused colour), its shape (triangle and
    /// star swapped, circle and square swapped), its count (±1), or the relation (each other one).</summary>
    private static IEnumerable<SceneSpec> WrongSpecs(SceneSpec spec)
    {
        var first = spec.Objects[0];
        var usedColours = spec.Objects.Select(o => o.Color).ToHashSet();
        var swappedShape = first.Shape switch
        {
            ShapeKind.Triangle => ShapeKind.Star,
            ShapeKind.Star => ShapeKind.Triangle,
            ShapeKind.Circle => ShapeKind.Square,
            _ => ShapeKind.Circle,
        };
        switch (spec.Category)
        {
            case PromptCategory.Binding:
                foreach (var c in Palette.All.Where(c => !usedColours.Contains(c)))
                    yield return SceneSpec.Binding([first with { Color = c }, .. spec.Objects.Skip(1)]);
                if (spec.Objects.All(o => o.Shape != swappedShape))
                    yield return SceneSpec.Binding([first with { Shape = swappedShape }, .. spec.Objects.Skip(1)]);
                break;
            case PromptCategory.Counting:
                foreach (var c in Palette.All.Where(c => !usedColours.Contains(c)))
                    yield return SceneSpec.Counting(c, first.Shape, first.Count);
                yield return SceneSpec.Counting(first.Color, swappedShape, first.Count);
                foreach (int n in new[] { first.Count - 1, first.Count + 1 }.Where(n => n is >= 2 and <= SceneSpec.MaxCount))
                    yield return SceneSpec.Counting(first.Color, first.Shape, n);
                break;
            default:
                var second = spec.Objects[1];
                foreach (var c in Palette.All.Where(c => !usedColours.Contains(c)))
                    yield return SceneSpec.Spatial(first with { Color = c }, spec.Relation!.Value, second);
                if (second.Shape != swappedShape || second.Color != first.Color)
                    yield return SceneSpec.Spatial(first with { Shape = swappedShape }, spec.Relation!.Value, second);
                foreach (var r in Enum.GetValues<SpatialRelation>().Where(r => r != spec.Relation))
                    yield return SceneSpec.Spatial(first, r, second);
                break;
        }
    }
}

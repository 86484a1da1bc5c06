using Xunit;

namespace CTCal.Synthetic.Tests;

/// <summary>Wrong images fail the check they violate, so the accuracy tests can fail.</summary>
public sealed class EvaluatorNegativeTests
{
    private static readonly Evaluator Evaluator = new();
    private static readonly List<(SceneSpec Spec, Scene Scene)> Scenes = EvaluatorAccuracyTests.Scenes(seed: 91, perCategory: 30);

    [Fact]
    public void WrongColourFailsBinding()
    {
        foreach (var (spec, scene) in Scenes.Where(s => s.Spec.Category == PromptCategory.Binding))
        {
            // Repaint the last object in a colour the prompt does not mention.
            var used = spec.Objects.Select(o => o.Color).ToHashSet();
            var other = Palette.All.First(c => !used.Contains(c));
            var objects = scene.Objects.ToList();
            objects[^1] = objects[^1] with { Color = other };
            var score = Evaluator.Score(Renderer.Render(scene with { Objects = objects }), spec);
            Assert.True(score.Binding == 0, $"'{CaptionGrammar.Caption(spec)}' repainted {other}: binding {score.Binding}");
            Assert.Equal(0, score.Overall);
        }
    }

    [Fact]
    public void WrongShapeFailsBinding()
    {
        foreach (var (spec, scene) in Scenes.Where(s => s.Spec.Category == PromptCategory.Binding))
        {
            var used = spec.Objects.Select(o => o.Shape).ToHashSet();
            var other = Shapes.All.First(s => !used.Contains(s));
            var objects = scene.Objects.ToList();
            objects[0] = objects[0] with { Shape = other };
            var score = Evaluator.Score(Renderer.Render(scene with { Objects = objects }), spec);
            Assert.True(score.Binding == 0, $"'{CaptionGrammar.Caption(spec)}' reshaped to {other}: binding {score.Binding}");
        }
    }

    [Fact]
    public void SwappedOrOtherRelationFailsSpatial()
    {
        foreach (var (spec, scene) in Scenes.Where(s => s.Spec.Category == PromptCategory.Spatial))
        {
            var image = Renderer.Render(scene);
            Assert.Equal(1, Evaluator.Score(image, spec).Spatial);
            foreach (var relation in Enum.GetValues<SpatialRelation>().Where(r => r != spec.Relation))
            {
                var wrong = SceneSpec.Spatial(spec.Objects[0], relation, spec.Objects[1]);
                var score = Evaluator.Score(image, wrong);
                Assert.True(score.Spatial == 0, $"'{CaptionGrammar.Caption(spec)}' scored as '{CaptionGrammar.Caption(wrong)}': spatial {score.Spatial}");
                Assert.Equal(1, score.Binding);
                Assert.Equal(0.5, score.Overall);
            }
            // Objects exchanged: the first object where the second was.
            var swapped = SceneSpec.Spatial(spec.Objects[1], spec.Relation!.Value, spec.Objects[0]);
            Assert.Equal(0, Evaluator.Score(image, swapped).Spatial);
        }
    }

    [Fact]
    public void WrongCountFailsCounting()
    {
        foreach (var (spec, scene) in Scenes.Where(s => s.Spec.Category == PromptCategory.Counting))
        {
            var image = Renderer.Render(scene);
            var o = spec.Objects[0];
            var wrong = SceneSpec.Counting(o.Color, o.Shape, o.Count == 2 ? 3 : 2);
            var score = Evaluator.Score(image, wrong);
            Assert.True(score.Counting == 0, $"{o.Count} objects scored as '{CaptionGrammar.Caption(wrong)}': counting {score.Counting}");
            Assert.Equal(1, score.Binding);
        }
    }

    [Fact]
    public void BlankImageFailsEverything()
    {
        var blank = Renderer.Render(new Scene(64, 64, []));
        Assert.Empty(Evaluator.Detect(blank));
        foreach (var (spec, _) in Scenes)
        {
            var score = Evaluator.Score(blank, spec);
            Assert.Equal(0, score.Overall);
        }
    }

    [Fact]
    public void NoiseAloneIsNotAnObject()
    {
        var noisy = Renderer.Render(new Scene(64, 64, [])).WithGaussianNoise(0.08, seed: 3);
        Assert.Empty(Evaluator.Detect(noisy));
    }
}

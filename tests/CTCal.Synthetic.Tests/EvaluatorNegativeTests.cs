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

    [Fact]
    public void EveryShapeSwapFailsBindingAtEverySize()
    {
        // Each shape redrawn as each other shape, small (12 px, the sampler's floor) to large: the template fit must not
        // let a triangle pass as a star, a star as a circle, a square as a circle, or any other swap.
        foreach (double size in new[] { 12.0, 16, 24, 32 })
        {
            foreach (var drawn in Shapes.All)
            {
                foreach (var asked in Shapes.All.Where(s => s != drawn))
                {
                    var image = Renderer.Render(new Scene(64, 64, [new SceneObject(ShapeColor.Purple, drawn, 30, 34, size)]));
                    var score = Evaluator.Score(image, SceneSpec.Binding(new ObjectSpec(ShapeColor.Purple, asked)));
                    Assert.True(score.Binding == 0, $"a {size} px {drawn} passed as a {asked}");
                }
            }
        }
    }

    [Fact]
    public void OffPaletteObjectIsNotAnObject()
    {
        // A grey or black square is far from every palette colour: no object, whatever its shape.
        foreach (var (r, g, b) in new[] { (128, 128, 128), (20, 20, 20), (90, 90, 96) })
        {
            var image = Renderer.Render(new Scene(64, 64, [new SceneObject(ShapeColor.Red, ShapeKind.Square, 32, 32, 24)]));
            for (int i = 0; i < image.Pixels.Length; i += 4)
            {
                if (image.Pixels[i] == 214 && image.Pixels[i + 1] == 36) (image.Pixels[i], image.Pixels[i + 1], image.Pixels[i + 2]) = ((byte)r, (byte)g, (byte)b);
            }
            Assert.True(Evaluator.Detect(image).All(d => d.Area < 100), $"a ({r}, {g}, {b}) square was taken for an object: {string.Join("; ", Evaluator.Detect(image))}");
        }
    }

    [Fact]
    public void TouchingObjectsOfTwoColoursStayTwoObjects()
    {
        // Merging object-coloured pixels into one region (to absorb a decoder's hue-shifted rims) must not merge two
        // touching objects of different colours.
        var image = Renderer.Render(new Scene(64, 64, [
            new SceneObject(ShapeColor.Red, ShapeKind.Square, 22, 32, 22), new SceneObject(ShapeColor.Blue, ShapeKind.Circle, 41, 32, 20)]));
        var found = Evaluator.Detect(image);
        Assert.Contains(found, d => d.Color == ShapeColor.Red && d.Shape == ShapeKind.Square);
        Assert.Contains(found, d => d.Color == ShapeColor.Blue && d.Shape == ShapeKind.Circle);
        Assert.Equal(1, Evaluator.Score(image, SceneSpec.Spatial(new ObjectSpec(ShapeColor.Red, ShapeKind.Square), SpatialRelation.LeftOf,
            new ObjectSpec(ShapeColor.Blue, ShapeKind.Circle))).Spatial);
    }

    [Fact]
    public void AnObjectGradedBetweenNeighbouringColoursIsOneObject()
    {
        // Generated stars come out purple with a blue half: one star (not a blue and a purple fragment), while red and blue
        // halves (far apart) are two touching objects.
        foreach (var (other, expected) in new[] { (ShapeColor.Blue, 1), (ShapeColor.Red, 2) })
        {
            var image = Renderer.Render(new Scene(64, 64, [new SceneObject(ShapeColor.Purple, ShapeKind.Star, 32, 32, 30)]));
            var paint = Palette.ToRgb(other);
            for (int y = 0; y < 64; y++)
            {
                for (int x = 0; x < 32; x++)
                {
                    int i = (y * 64 + x) * 4;
                    if (image.Pixels[i] == 140 && image.Pixels[i + 1] == 48) (image.Pixels[i], image.Pixels[i + 1], image.Pixels[i + 2]) = (paint.R, paint.G, paint.B);
                }
            }
            var found = Evaluator.Detect(image);
            Assert.True(found.Count == expected, $"purple star half {other}: {string.Join("; ", found)}");
            if (expected == 1) Assert.Equal(ShapeKind.Star, found[0].Shape);
        }
    }
}

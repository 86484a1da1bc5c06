using Xunit;
using Xunit.Abstractions;

namespace CTCal.Synthetic.Tests;

/// <summary>The scorer recognises the world's own renders, clean and noisy.</summary>
public sealed class EvaluatorAccuracyTests(ITestOutputHelper output)
{
    private const int PerCategory = 100;
    private static readonly Evaluator Evaluator = new();

    /// <summary>PerCategory scenes per category drawn from every prompt group of the grammar (seeded).</summary>
    internal static List<(SceneSpec Spec, Scene Scene)> Scenes(ulong seed, int perCategory = PerCategory, int imageSize = 64)
    {
        var rng = new SeededRandom(seed);
        var sampler = new SceneSampler(imageSize);
        var groups = SyntheticWorld.EnumerateGroups();
        var result = new List<(SceneSpec, Scene)>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var pool = groups.Where(g => g[0].Category == category).ToArray();
            for (int i = 0; i < perCategory; i++)
            {
                var variants = pool[rng.NextInt(pool.Length)];
                var spec = variants[rng.NextInt(variants.Length)];
                result.Add((spec, sampler.Sample(spec, rng)));
            }
        }
        return result;
    }

    private Dictionary<PromptCategory, double> Measure(int imageSize, double noiseSigma)
    {
        string label = $"{imageSize}px sigma={noiseSigma:F2}";
        var scores = new List<(PromptCategory Category, ImageScore Score, SceneSpec Spec)>();
        int n = 0;
        foreach (var (spec, scene) in Scenes(seed: 77, imageSize: imageSize))
        {
            var image = Renderer.Render(scene);
            if (noiseSigma > 0) image = image.WithGaussianNoise(noiseSigma, seed: 1000 + (ulong)n);
            var score = Evaluator.Score(image, spec);
            if (score.Primary(spec.Category) < 1)
                output.WriteLine($"[{label}] miss: {CaptionGrammar.Caption(spec)} detected: {string.Join("; ", score.Objects.Select(o => $"{o.Color} {o.Shape} area={o.Area} sol={o.Solidity:F2} top={o.TopHalf:F2} wide={o.WidestRow:F2} corners={o.Corners:F2}"))}");
            scores.Add((spec.Category, score, spec));
            n++;
        }
        var result = new Dictionary<PromptCategory, double>();
        foreach (var g in scores.GroupBy(s => s.Category))
        {
            result[g.Key] = g.Average(s => s.Score.Primary(g.Key));
            output.WriteLine($"[{label}] {g.Key}: n={g.Count()} check={result[g.Key]:F3} overall={g.Average(s => s.Score.Overall):F3}");
        }
        output.WriteLine($"[{label}] all: n={scores.Count} overall={scores.Average(s => s.Score.Overall):F3}");
        return result;
    }

    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    public void CleanRendersScoreAtLeast99Percent(int imageSize)
    {
        foreach (var (category, accuracy) in Measure(imageSize, 0))
            Assert.True(accuracy >= 0.99, $"{category}: {accuracy:P1} < 99%");
    }

    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    public void NoisyRendersScoreAtLeast95Percent(int imageSize)
    {
        foreach (var (category, accuracy) in Measure(imageSize, 0.08))
            Assert.True(accuracy >= 0.95, $"{category}: {accuracy:P1} < 95%");
    }
}

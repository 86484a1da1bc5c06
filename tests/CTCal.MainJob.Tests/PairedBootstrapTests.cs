using CTCal.MainJob.Statistics;
using CTCal.Synthetic;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>The paired, prompt-clustered, seed-resampled bootstrap on synthetic data with known differences.</summary>
public sealed class PairedBootstrapTests
{
    private static readonly PairedBootstrapOptions Fast = new() { Resamples = 2000, Seed = 7 };

    /// <summary>
    /// Pass/fail scores [seed][prompt][image]: prompt p passes with probability q_p (uniform in 0.2..0.8) for A and
    /// q_p + <paramref name="effect"/> for B, plus a per-seed offset shared by both methods.
    /// </summary>
    private static (List<double[][]> A, List<double[][]> B) Simulate(int seeds, int prompts, int images, double effect, ulong seed)
    {
        var rng = new SeededRandom(seed);
        var q = Enumerable.Range(0, prompts).Select(_ => rng.NextDouble(0.2, 0.8)).ToArray();
        var a = new List<double[][]>();
        var b = new List<double[][]>();
        for (int s = 0; s < seeds; s++)
        {
            double offset = rng.NextDouble(-0.05, 0.05);
            a.Add(q.Select(p => Enumerable.Range(0, images).Select(_ => rng.NextDouble() < p + offset ? 1.0 : 0.0).ToArray()).ToArray());
            b.Add(q.Select(p => Enumerable.Range(0, images).Select(_ => rng.NextDouble() < p + offset + effect ? 1.0 : 0.0).ToArray()).ToArray());
        }

        return (a, b);
    }

    [Fact]
    public void LargeEffectOnManyUnitsIsCoveredAndZeroIsExcluded()
    {
        var (a, b) = Simulate(seeds: 3, prompts: 200, images: 4, effect: 0.15, seed: 1);
        var r = PairedBootstrap.Compare(a, b, Fast);
        Assert.Equal(3, r.SeedPairs);
        Assert.Equal(200, r.Prompts);
        Assert.Equal(800, r.Images);
        Assert.InRange(r.Difference, 0.11, 0.19);
        Assert.True(r.Covers(0.15), $"[{r.Low}, {r.High}] misses the true 0.15");
        Assert.True(r.ExcludesZero, $"[{r.Low}, {r.High}] holds 0");
        Assert.True(r.Low < r.Difference && r.Difference < r.High);
        Assert.Equal(r.MeanB - r.MeanA, r.Difference, 12);
    }

    [Fact]
    public void IdenticalMethodsGiveZeroAndAnIntervalHoldingIt()
    {
        var (a, _) = Simulate(seeds: 2, prompts: 50, images: 2, effect: 0, seed: 2);
        var same = PairedBootstrap.Compare(a, a, Fast);
        Assert.Equal(0, same.Difference);
        Assert.True(same.Covers(0));
        Assert.All(same.PerSeed, s => Assert.Equal(0, s.Difference));

        // Two independent draws from one distribution: a non-zero estimate, but 0 inside the interval.
        var (a2, b2) = Simulate(seeds: 3, prompts: 120, images: 4, effect: 0, seed: 3);
        var noEffect = PairedBootstrap.Compare(a2, b2, Fast);
        Assert.True(noEffect.Covers(0), $"[{noEffect.Low}, {noEffect.High}]");
        Assert.False(noEffect.ExcludesZero);
    }

    [Fact]
    public void SameSeedSameIntervalOtherSeedDiffers()
    {
        var (a, b) = Simulate(seeds: 2, prompts: 60, images: 3, effect: 0.05, seed: 4);
        var first = PairedBootstrap.Compare(a, b, Fast);
        var again = PairedBootstrap.Compare(a, b, Fast);
        var other = PairedBootstrap.Compare(a, b, Fast with { Seed = 8 });
        Assert.Equal((first.Low, first.High, first.StandardError), (again.Low, again.High, again.StandardError));
        Assert.Equal(first.PerSeed.Select(s => (s.Low, s.High)), again.PerSeed.Select(s => (s.Low, s.High)));
        Assert.Equal(first.Difference, other.Difference);
        Assert.NotEqual((first.Low, first.High), (other.Low, other.High));
    }

    [Fact]
    public void ClusteringByPromptWidensTheIntervalWhenImagesOfAPromptAgree()
    {
        // 40 prompts x 10 images, every image of a prompt scored alike: B gains on 12 prompts, loses on 4. Only 40
        // independent observations, not 400: the prompt bootstrap sees that, the image bootstrap does not.
        var a = new double[40][];
        var b = new double[40][];
        for (int p = 0; p < 40; p++)
        {
            a[p] = Enumerable.Repeat(p < 12 ? 0.0 : p < 16 ? 1.0 : p % 2, 10).ToArray();
            b[p] = Enumerable.Repeat(p < 12 ? 1.0 : p < 16 ? 0.0 : p % 2, 10).ToArray();
        }

        var clustered = PairedBootstrap.Compare([a], [b], Fast);
        var images = PairedBootstrap.Compare([a], [b], Fast with { ClusterByPrompt = false });
        Assert.Equal(0.2, clustered.Difference, 12);
        Assert.Equal(clustered.Difference, images.Difference);
        double wide = clustered.High - clustered.Low, narrow = images.High - images.Low;
        Assert.True(wide > 2.5 * narrow, $"clustered width {wide}, image width {narrow}");
        Assert.True(clustered.StandardError > 2.5 * images.StandardError);
    }

    [Fact]
    public void ResamplingSeedPairsWidensTheIntervalWhenSeedsDisagree()
    {
        // Same prompts, three seed pairs with differences +0.3, 0 and -0.1: the pooled interval must reflect the seed
        // spread, wider than any single pair's prompt-only interval.
        var rng = new SeededRandom(5);
        var a0 = Enumerable.Range(0, 100).Select(_ => new[] { rng.NextDouble() < 0.4 ? 1.0 : 0.0 }).ToArray();
        var gain = a0.Select((v, p) => new[] { p < 30 ? 1.0 : v[0] }).ToArray();
        var lose = a0.Select(v => v.ToArray()).ToArray();
        foreach (var unit in lose.Where(v => v[0] == 1).Take(10)) unit[0] = 0;
        var a = new List<double[][]> { a0, a0, a0 };
        var b = new List<double[][]> { gain, a0, lose };
        var r = PairedBootstrap.Compare(a, b, Fast);
        Assert.Equal(3, r.PerSeed.Count);
        Assert.Equal(r.PerSeed.Average(s => s.Difference), r.Difference, 12);
        Assert.Equal(0, r.PerSeed[1].Difference);
        Assert.Equal(-0.1, r.PerSeed[2].Difference, 12);
        Assert.True(r.PerSeed[0].Difference > 0);
        Assert.All(r.PerSeed, s => Assert.True(r.High - r.Low > s.High - s.Low, $"pooled [{r.Low}, {r.High}] vs seed {s.SeedIndex} [{s.Low}, {s.High}]"));
        Assert.Equal(0, r.PerSeed[1].Low);
        Assert.Equal(0, r.PerSeed[1].High);
    }

    [Fact]
    public void ScoredImagesArePairedByPromptAndSeedAndFilteredBySelector()
    {
        static ModelScores Model(string name, Func<int, long, bool> pass) => new(name, new Dictionary<string, double>(),
            (from p in Enumerable.Range(0, 6) from s in new long[] { 1000, 1001 }
             select new ImageResult(name, p, s, $"p{p}-s{s}.png", AggregationTests.Score(p < 3 ? PromptCategory.Binding : PromptCategory.Spatial, pass(p, s)))).Reverse().ToList());
        var vanilla = new[] { Model("vanilla-s1", (p, s) => false), Model("vanilla-s2", (p, s) => p == 0) };
        var ctcal = new[] { Model("ctcal-s1", (p, s) => s == 1000), Model("ctcal-s2", (p, s) => p == 0) };

        // Binding prompts only (0..2): seed pair 0 gains 3 of 6 images, pair 1 nothing.
        var r = PairedBootstrap.Compare(vanilla, ctcal, i => i.PromptIndex < 3 ? i.Score.Binding : null, Fast);
        Assert.Equal(3, r.Prompts);
        Assert.Equal(6, r.Images);
        Assert.Equal(0.5, r.PerSeed[0].Difference, 12);
        Assert.Equal(0, r.PerSeed[1].Difference, 12);
        Assert.Equal(0.25, r.Difference, 12);

        var missing = new ModelScores("ctcal-s2", ctcal[1].Metrics, ctcal[1].Images.Where(i => !(i.PromptIndex == 4 && i.Seed == 1001)).ToList());
        var e = Assert.Throws<ArgumentException>(() => PairedBootstrap.Compare(vanilla, [ctcal[0], missing], i => i.Score.Overall, Fast));
        Assert.Contains("'ctcal-s2' has no scored image for prompt 4 seed 1001", e.Message);
        Assert.Throws<ArgumentException>(() => PairedBootstrap.Compare(vanilla, [ctcal[0]], i => i.Score.Overall, Fast));
    }

    [Fact]
    public void MismatchedShapesAndBadScoresAreRefused()
    {
        double[][] one = [[1, 0], [1]];
        Assert.Contains("prompt 1", Assert.Throws<ArgumentException>(() => PairedBootstrap.Compare([one], [[[1, 0], [1, 1]]], Fast)).Message);
        Assert.Contains("not a finite", Assert.Throws<ArgumentException>(() => PairedBootstrap.Compare([one], [[[1, double.NaN], [1]]], Fast)).Message);
        Assert.Contains("seeds are paired", Assert.Throws<ArgumentException>(() => PairedBootstrap.Compare([one, one], [one], Fast)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => PairedBootstrap.Compare([one], [one], Fast with { Resamples = 10 }));
    }

    [Fact]
    public void QuantileInterpolatesBetweenOrderStatistics()
    {
        double[] sorted = [0, 1, 2, 3, 4];
        Assert.Equal(0, PairedBootstrap.Quantile(sorted, 0));
        Assert.Equal(4, PairedBootstrap.Quantile(sorted, 1));
        Assert.Equal(1.1, PairedBootstrap.Quantile(sorted, 0.275), 12);
    }
}

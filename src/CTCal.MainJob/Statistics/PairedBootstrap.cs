using CTCal.Synthetic;

namespace CTCal.MainJob.Statistics;

/// <summary>Settings of a <see cref="PairedBootstrap"/>.</summary>
public sealed record PairedBootstrapOptions
{
    /// <summary>Bootstrap resamples.</summary>
    public int Resamples { get; init; } = 10_000;

    /// <summary>Seed of the resampling (the same seed gives the same interval).</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Coverage of the percentile interval.</summary>
    public double Confidence { get; init; } = 0.95;

    /// <summary>
    /// Resample whole prompts (all image seeds of a prompt together: images of one prompt are correlated). False
    /// resamples single images, which understates the uncertainty whenever prompts differ in difficulty; it is there
    /// to show that, not for reporting.
    /// </summary>
    public bool ClusterByPrompt { get; init; } = true;

    /// <summary>
    /// Resample the fine-tune seed pairs as well (the interval then speaks for new seeds, not only these). Crossed with
    /// the prompt resampling this counts the image-level noise twice, so without real seed or prompt effects the
    /// standard error comes out up to sqrt(2) too large (a conservative interval; no bootstrap of a crossed design is
    /// exact, McCullagh 2000). False holds the seed pairs fixed.
    /// </summary>
    public bool ResampleSeeds { get; init; } = true;
}

/// <summary>One fine-tune seed pair: seed s of method A against seed s of method B on the same units.</summary>
/// <param name="SeedIndex">Position of the pair in the input (0-based).</param>
/// <param name="Low">Lower end of the prompt-bootstrap interval of this pair alone (seed held fixed).</param>
/// <param name="High">Upper end of that interval.</param>
public sealed record SeedPairDifference(int SeedIndex, double MeanA, double MeanB, double Difference, double Low, double High);

/// <summary>
/// Result of a <see cref="PairedBootstrap"/>: the mean difference B - A over every unit of every seed pair, its
/// percentile interval, the bootstrap standard error and the per-seed-pair differences.
/// </summary>
public sealed record PairedBootstrapResult(
    int SeedPairs, int Prompts, int Images, double MeanA, double MeanB, double Difference, double Low, double High, double StandardError,
    double Confidence, int Resamples, ulong Seed, bool ClusteredByPrompt, bool ResampledSeeds, IReadOnlyList<SeedPairDifference> PerSeed)
{
    /// <summary>Whether the interval holds <paramref name="value"/>.</summary>
    public bool Covers(double value) => Low <= value && value <= High;

    /// <summary>Whether the interval lies wholly above or wholly below 0.</summary>
    public bool ExcludesZero => Low > 0 || High < 0;
}

/// <summary>
/// Paired, two-way cluster bootstrap of the difference between two methods evaluated on the same units (unit = prompt
/// x image seed), each with several fine-tune seeds paired by index (seed s of A with seed s of B).
/// </summary>
/// <remarks>
/// Input: <c>a[s][p][i]</c> and <c>b[s][p][i]</c>, the score (usually 0 or 1) of image i of prompt p for seed pair s;
/// every seed pair has the same prompts and the same images per prompt in both methods. The estimate is
/// mean(B) - mean(A) over all units of all seed pairs. Each resample draws seed pairs with replacement (unless
/// <see cref="PairedBootstrapOptions.ResampleSeeds"/> is off) and, crossed with them, prompts with replacement (every image of a drawn prompt comes along; with
/// <see cref="PairedBootstrapOptions.ClusterByPrompt"/> off, single images instead), and recomputes the difference of the
/// resampled units; pairing is kept because a drawn unit carries both methods' scores. The interval is the
/// (1 - c)/2 and (1 + c)/2 percentiles of the resampled differences (Efron and Tibshirani 1993, ch. 13; quantiles by
/// linear interpolation, R's type 7). Per seed pair, the same prompt bootstrap with the seed held fixed.
/// </remarks>
public static class PairedBootstrap
{
    /// <summary>Compares per-unit scores <paramref name="a"/> and <paramref name="b"/> (indexed [seed pair][prompt][image]).</summary>
    /// <exception cref="ArgumentException">The shapes differ, a prompt has no image, or a score is not finite.</exception>
    public static PairedBootstrapResult Compare(IReadOnlyList<double[][]> a, IReadOnlyList<double[][]> b, PairedBootstrapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        options ??= new PairedBootstrapOptions();
        if (options.Resamples < 100) throw new ArgumentOutOfRangeException(nameof(options), options.Resamples, "Resamples must be at least 100");
        if (options.Confidence is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(options), options.Confidence, "Confidence must be in (0, 1)");
        if (a.Count == 0) throw new ArgumentException("no seed pairs to compare", nameof(a));
        if (a.Count != b.Count) throw new ArgumentException($"method A has {a.Count} seeds, method B {b.Count}; seeds are paired by index", nameof(b));
        int prompts = a[0].Length;
        if (prompts == 0) throw new ArgumentException("no prompts to compare", nameof(a));
        var imagesPer = new int[prompts];
        for (int s = 0; s < a.Count; s++)
        {
            if (a[s].Length != prompts || b[s].Length != prompts)
                throw new ArgumentException($"seed pair {s}: {a[s].Length} prompts in A and {b[s].Length} in B, expected {prompts} (as seed pair 0 of A)");
            for (int p = 0; p < prompts; p++)
            {
                if (s == 0) imagesPer[p] = a[0][p].Length;
                if (imagesPer[p] == 0) throw new ArgumentException($"prompt {p} has no image");
                if (a[s][p].Length != imagesPer[p] || b[s][p].Length != imagesPer[p])
                    throw new ArgumentException($"seed pair {s}, prompt {p}: {a[s][p].Length} images in A and {b[s][p].Length} in B, expected {imagesPer[p]}");
                foreach (double bad in a[s][p].Concat(b[s][p]).Where(x => !double.IsFinite(x)).Take(1))
                    throw new ArgumentException($"seed pair {s}, prompt {p}: score {bad} is not a finite number");
            }
        }

        // Clusters: prompts (all their images) or single images. diff[s][k] = sum of B - A over cluster k; size[k] its images.
        int seeds = a.Count;
        var clusters = options.ClusterByPrompt
            ? Enumerable.Range(0, prompts).Select(p => Enumerable.Range(0, imagesPer[p]).Select(i => (p, i)).ToArray()).ToArray()
            : Enumerable.Range(0, prompts).SelectMany(p => Enumerable.Range(0, imagesPer[p]).Select(i => new[] { (p, i) })).ToArray();
        var size = clusters.Select(c => (double)c.Length).ToArray();
        var diff = new double[seeds][];
        double sumA = 0, sumB = 0;
        for (int s = 0; s < seeds; s++)
        {
            diff[s] = new double[clusters.Length];
            for (int k = 0; k < clusters.Length; k++)
            {
                foreach (var (p, i) in clusters[k])
                {
                    diff[s][k] += b[s][p][i] - a[s][p][i];
                    sumA += a[s][p][i];
                    sumB += b[s][p][i];
                }
            }
        }

        int images = imagesPer.Sum();
        double units = (double)seeds * images;
        var all = Enumerable.Range(0, seeds).ToArray();
        var (low, high, se) = Interval(diff, size, all, options, SeededRandom.ForStream(options.Seed, 0));
        var perSeed = new List<SeedPairDifference>();
        for (int s = 0; s < seeds; s++)
        {
            double meanA = a[s].Sum(x => x.Sum()) / images, meanB = b[s].Sum(x => x.Sum()) / images;
            var (sl, sh, _) = Interval(diff, size, [s], options, SeededRandom.ForStream(options.Seed, 1 + (ulong)s));
            perSeed.Add(new SeedPairDifference(s, meanA, meanB, meanB - meanA, sl, sh));
        }

        return new PairedBootstrapResult(seeds, prompts, images, sumA / units, sumB / units, (sumB - sumA) / units, low, high, se,
            options.Confidence, options.Resamples, options.Seed, options.ClusterByPrompt, options.ResampleSeeds, perSeed);
    }

    /// <summary>
    /// Compares two methods' scored images (<see cref="ModelScores.Images"/>, one model per fine-tune seed, paired by
    /// position): a unit is (prompt index, image seed); <paramref name="score"/> gives its score, or null to leave the
    /// unit out (e.g. prompts of another category). Every model must have the same units.
    /// </summary>
    /// <exception cref="ArgumentException">A model lacks a unit another has, has one twice, or none is left.</exception>
    public static PairedBootstrapResult Compare(IReadOnlyList<ModelScores> a, IReadOnlyList<ModelScores> b, Func<ImageResult, double?> score,
        PairedBootstrapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(score);
        if (a.Count == 0 || a.Count != b.Count)
            throw new ArgumentException($"method A has {a.Count} models, method B {b.Count}; need the same positive number (seeds paired by position)");

        var models = a.Concat(b).ToList();
        var reference = Units(models[0]);
        if (reference.Count == 0) throw new ArgumentException($"model '{models[0].Model}': no image has a score");
        var layout = reference.Keys.GroupBy(u => u.Prompt).OrderBy(g => g.Key).Select(g => g.Select(u => u.Seed).Order().ToArray()).ToArray();
        var promptIds = reference.Keys.Select(u => u.Prompt).Distinct().Order().ToArray();
        foreach (var model in models.Skip(1))
        {
            var units = Units(model);
            foreach (var extra in units.Keys.Where(u => !reference.ContainsKey(u)).Take(1))
                throw new ArgumentException($"model '{model.Model}' has a scored image for prompt {extra.Prompt} seed {extra.Seed} that '{models[0].Model}' has not");
            foreach (var missing in reference.Keys.Where(u => !units.ContainsKey(u)).Take(1))
                throw new ArgumentException($"model '{model.Model}' has no scored image for prompt {missing.Prompt} seed {missing.Seed} that '{models[0].Model}' has");
        }

        return Compare(a.Select(Table).ToList(), b.Select(Table).ToList(), options);

        double[][] Table(ModelScores model)
        {
            var units = Units(model);
            return promptIds.Select((p, k) => layout[k].Select(seed => units[new Unit(p, seed)]).ToArray()).ToArray();
        }

        Dictionary<Unit, double> Units(ModelScores model)
        {
            var units = new Dictionary<Unit, double>();
            foreach (var image in model.Images)
            {
                if (score(image) is not double value) continue;
                if (!units.TryAdd(new Unit(image.PromptIndex, image.Seed), value))
                    throw new ArgumentException($"model '{model.Model}' has two images for prompt {image.PromptIndex} seed {image.Seed}");
            }

            return units;
        }
    }

    /// <summary>Percentile interval and standard error of the resampled difference for seed pairs <paramref name="seedPool"/>.</summary>
    private static (double Low, double High, double StandardError) Interval(double[][] diff, double[] size, int[] seedPool,
        PairedBootstrapOptions options, SeededRandom rng)
    {
        int clusters = size.Length;
        var seedWeight = new double[diff.Length];
        var draws = new double[options.Resamples];
        for (int r = 0; r < draws.Length; r++)
        {
            Array.Clear(seedWeight);
            for (int j = 0; j < seedPool.Length; j++) seedWeight[options.ResampleSeeds ? seedPool[rng.NextInt(seedPool.Length)] : seedPool[j]]++;
            double num = 0, den = 0;
            for (int j = 0; j < clusters; j++)
            {
                int k = rng.NextInt(clusters);
                den += size[k];
                foreach (int s in seedPool) num += seedWeight[s] * diff[s][k];
            }

            draws[r] = num / (den * seedPool.Length);
        }

        Array.Sort(draws);
        double tail = (1 - options.Confidence) / 2;
        double mean = draws.Average();
        double se = Math.Sqrt(draws.Sum(x => (x - mean) * (x - mean)) / (draws.Length - 1));
        return (Quantile(draws, tail), Quantile(draws, 1 - tail), se);
    }

    /// <summary>Quantile of sorted values by linear interpolation between order statistics (R type 7).</summary>
    internal static double Quantile(double[] sorted, double q)
    {
        double h = (sorted.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    private readonly record struct Unit(int Prompt, long Seed);
}

using System.Globalization;
using CTCal.Synthetic;

namespace CTCal.MainJob;

/// <summary>
/// Flat metric names of one model's evaluation, so that several fine-tune seeds aggregate key by key:
/// <c>&lt;subset&gt;.&lt;check&gt;</c> with subset <c>all</c>, <c>seen</c> (prompts naming only trained colour-shape
/// pairs) or <c>heldout</c> (prompts naming a held-out pair), and check <c>overall</c> (mean of every applicable check
/// of every image), <c>binding</c> / <c>counting</c> / <c>spatial</c> (the category's own check on that category's
/// prompts); <c>diversity.layout</c> and <c>diversity.pixel</c> (mean over prompts, across image seeds).
/// </summary>
public static class Metrics
{
    public static readonly string[] Subsets = ["all", "seen", "heldout"];

    public static readonly string[] Checks = ["overall", "binding", "counting", "spatial"];

    public const string DiversityLayout = "diversity.layout";
    public const string DiversityPixel = "diversity.pixel";

    public static string Key(string subset, string check) => $"{subset}.{check}";

    public static string Word(PromptCategory category) => category.ToString().ToLowerInvariant();

    /// <summary>A fraction as a percentage with one decimal, invariant culture (<c>0.4567</c> -> <c>45.7%</c>).</summary>
    public static string Pct(double fraction) => double.IsNaN(fraction) ? "n/a" : (fraction * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%";

    /// <summary>A fraction difference in percentage points with one decimal.</summary>
    public static string Points(double fraction) => (fraction * 100).ToString("0.0", CultureInfo.InvariantCulture);

    /// <summary>The flat metrics of <paramref name="report"/>; checks without images are left out.</summary>
    public static IReadOnlyDictionary<string, double> Flatten(EvaluationReport report)
    {
        var result = new Dictionary<string, double>();
        foreach (var (name, subset) in new[] { ("all", report.All), ("seen", report.InDistribution), ("heldout", report.HeldOut) })
        {
            if (subset.Total.Count > 0)
            {
                result[Key(name, "overall")] = subset.Total.Overall;
            }

            foreach (var (category, stats) in subset.Categories)
            {
                if (stats.Count > 0)
                {
                    result[Key(name, Word(category))] = stats.Primary;
                }
            }
        }

        if (report.All.Diversity is { Prompts: > 0 } d)
        {
            result[DiversityLayout] = d.LayoutSpread;
            result[DiversityPixel] = d.MeanPixelDistance;
        }

        return result;
    }
}

/// <summary>A metric over fine-tune seeds: mean, sample standard deviation (0 for one seed), min and max.</summary>
public sealed record SeedStats(int N, double Mean, double Std, double Min, double Max)
{
    public static SeedStats Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0)
        {
            throw new ArgumentException("no values to aggregate", nameof(values));
        }

        double mean = values.Average();
        double std = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
        return new SeedStats(values.Count, mean, std, values.Min(), values.Max());
    }
}

/// <summary>One method's metrics aggregated over its fine-tune seeds (the base is a method with one "seed").</summary>
public sealed record MethodSummary(string Method, IReadOnlyList<string> Models, IReadOnlyDictionary<string, SeedStats> Metrics)
{
    /// <summary>Aggregates per metric key over <paramref name="models"/> (keys missing in a model are skipped for it).</summary>
    public static MethodSummary Of(string method, IReadOnlyList<ModelScores> models)
    {
        var keys = models.SelectMany(m => m.Metrics.Keys).Distinct().OrderBy(k => k, StringComparer.Ordinal);
        var stats = new Dictionary<string, SeedStats>();
        foreach (string key in keys)
        {
            var values = models.Where(m => m.Metrics.ContainsKey(key)).Select(m => m.Metrics[key]).ToList();
            stats[key] = SeedStats.Of(values);
        }

        return new MethodSummary(method, models.Select(m => m.Model).ToList(), stats);
    }
}

/// <summary>The plain comparison of CTCal against vanilla that the report states.</summary>
public sealed record Verdict(string Metric, double Ctcal, double Vanilla, double Difference, double Spread, string Text)
{
    /// <summary>
    /// Compares the means of <paramref name="metric"/>. "Spread" is the larger of the two seed standard deviations; a
    /// difference inside it is called no clear difference, whichever way it points.
    /// </summary>
    public static Verdict Of(MethodSummary ctcal, MethodSummary vanilla, string metric = "all.overall")
    {
        if (!ctcal.Metrics.TryGetValue(metric, out var c) || !vanilla.Metrics.TryGetValue(metric, out var v))
        {
            return new Verdict(metric, double.NaN, double.NaN, double.NaN, double.NaN, $"no {metric} score for both methods: no comparison");
        }

        double diff = c.Mean - v.Mean;
        double spread = Math.Max(c.Std, v.Std);
        string seeds = c.N == 1 ? "one seed, so the seed spread is unknown" : $"{c.N} seeds";
        string both = $"{Metrics.Pct(c.Mean)} vs {Metrics.Pct(v.Mean)}";
        string text = diff > spread && diff > 0
            ? $"CTCal beats vanilla on {metric}: {both} (+{Metrics.Points(diff)} points, more than the seed spread of {Metrics.Points(spread)}; {seeds})."
            : diff > 0
                ? $"CTCal does not clearly beat vanilla on {metric}: {both} (+{Metrics.Points(diff)} points, within the seed spread of {Metrics.Points(spread)}; {seeds})."
                : $"CTCal does not beat vanilla on {metric}: {both} ({Metrics.Points(diff)} points; {seeds}).";
        return new Verdict(metric, c.Mean, v.Mean, diff, spread, text);
    }
}

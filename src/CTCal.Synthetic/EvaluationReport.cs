using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CTCal.Synthetic;

/// <summary>Means over a group of scored images.</summary>
/// <param name="Count">Number of images.</param>
/// <param name="Primary">Mean of each image's category check (binding, counting or spatial).</param>
/// <param name="Overall">Mean of each image's <see cref="ImageScore.Overall"/>.</param>
public sealed record CategoryStats(int Count, double Primary, double Overall);

/// <summary>Mean diversity over prompts.</summary>
public sealed record DiversitySummary(int Prompts, double LayoutSpread, double MeanPixelDistance);

/// <summary>Scores of one subset of the evaluation prompts.</summary>
public sealed record SubsetReport(IReadOnlyDictionary<PromptCategory, CategoryStats> Categories, CategoryStats Total, DiversitySummary? Diversity);

/// <summary>
/// Aggregate of per-image scores: per category (count, mean category check, mean overall) for all prompts, the
/// in-distribution prompts and the held-out-pair prompts separately, plus mean diversity where measured.
/// </summary>
public sealed record EvaluationReport(SubsetReport All, SubsetReport InDistribution, SubsetReport HeldOut)
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>
    /// Scores every generated image against its prompt, measures diversity for prompts with two or more images
    /// (one per seed), and aggregates both.
    /// </summary>
    public static EvaluationReport Evaluate(Evaluator evaluator, IEnumerable<(EvalPrompt Prompt, IReadOnlyList<RgbaImage> Images)> generated)
    {
        ArgumentNullException.ThrowIfNull(evaluator);
        var scores = new List<(EvalPrompt, ImageScore)>();
        var diversity = new List<(EvalPrompt, DiversityScore)>();
        foreach (var (prompt, images) in generated)
        {
            foreach (var image in images) scores.Add((prompt, evaluator.Score(image, prompt.Spec)));
            if (images.Count >= 2) diversity.Add((prompt, Diversity.Measure(images, evaluator)));
        }
        return Build(scores, diversity);
    }

    /// <summary>Aggregates <paramref name="scores"/> (one entry per image) and optional per-prompt <paramref name="diversity"/>.</summary>
    public static EvaluationReport Build(IEnumerable<(EvalPrompt Prompt, ImageScore Score)> scores,
        IEnumerable<(EvalPrompt Prompt, DiversityScore Score)>? diversity = null)
    {
        var list = scores.ToList();
        var div = diversity?.ToList();
        return new EvaluationReport(Subset(_ => true), Subset(p => !p.HeldOutPair), Subset(p => p.HeldOutPair));

        SubsetReport Subset(Func<EvalPrompt, bool> include)
        {
            var items = list.Where(s => include(s.Prompt)).ToList();
            var categories = Enum.GetValues<PromptCategory>()
                .Select(c => (c, Stats(items.Where(s => s.Prompt.Category == c).ToList())))
                .Where(t => t.Item2.Count > 0)
                .ToDictionary(t => t.c, t => t.Item2);
            DiversitySummary? summary = null;
            if (div is not null)
            {
                var d = div.Where(x => include(x.Prompt)).Select(x => x.Score).ToList();
                summary = d.Count == 0 ? new DiversitySummary(0, 0, 0)
                    : new DiversitySummary(d.Count, d.Average(x => x.LayoutSpread), d.Average(x => x.MeanPixelDistance));
            }
            return new SubsetReport(categories, Stats(items), summary);
        }

        static CategoryStats Stats(List<(EvalPrompt Prompt, ImageScore Score)> items) => items.Count == 0
            ? new CategoryStats(0, 0, 0)
            : new CategoryStats(items.Count, items.Average(s => s.Score.Primary(s.Prompt.Category)), items.Average(s => s.Score.Overall));
    }

    /// <summary>The report as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>A plain-text table.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var (name, subset) in new[] { ("all", All), ("in-distribution", InDistribution), ("held-out pairs", HeldOut) })
        {
            sb.AppendLine($"{name}: n={subset.Total.Count} primary={subset.Total.Primary:F3} overall={subset.Total.Overall:F3}");
            foreach (var (category, s) in subset.Categories)
                sb.AppendLine($"  {category,-9} n={s.Count,-5} primary={s.Primary:F3} overall={s.Overall:F3}");
            if (subset.Diversity is { } d)
                sb.AppendLine($"  diversity prompts={d.Prompts} layoutSpread={d.LayoutSpread:F3} pixelDistance={d.MeanPixelDistance:F3}");
        }
        return sb.ToString();
    }
}

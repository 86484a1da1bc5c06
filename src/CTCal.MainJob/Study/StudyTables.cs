using System.Globalization;
using System.Text;
using CTCal.MainJob.Statistics;

namespace CTCal.MainJob.Study;

/// <summary>The markdown tables of the study's report sections.</summary>
public static class StudyTables
{
    /// <summary>
    /// One row per condition (in first-appearance order): models, each metric's mean over the condition's models
    /// (± sample std over fine-tune seeds when there are several), and the fine-tune measures (median ratio of the CTCal
    /// to the diffusion gradient norm, KL of student to teacher maps at the first and last measured step, minutes).
    /// </summary>
    public static string Measured(IReadOnlyList<StudyModelResult> results)
    {
        var md = new StringBuilder();
        md.AppendLine("| condition | models | " + string.Join(" | ", StudyComparison.MetricNames) + " | CTCal / diffusion gradient | map KL to teacher, first -> last | minutes |");
        md.AppendLine("|---|---|" + string.Concat(StudyComparison.MetricNames.Select(_ => "---|")) + "---|---|---|");
        foreach (var group in results.GroupBy(r => r.Model.Condition))
        {
            var models = group.ToList();
            var cells = new List<string> { group.Key, models.Count.ToString(CultureInfo.InvariantCulture) };
            foreach (string metric in StudyComparison.MetricNames)
            {
                var values = models.Select(m => StudyComparison.Mean(m.Images, metric)).Where(double.IsFinite).ToList();
                cells.Add(values.Count == 0 ? "–" : values.Count == 1 ? Metrics.Pct(values[0]) : $"{Metrics.Pct(values.Average())} ± {Metrics.Points(SeedStats.Of(values).Std)}");
            }

            var measures = models.Select(m => m.Measures).Where(m => m is not null).Select(m => m!).ToList();
            cells.Add(Format(Median(measures.Select(m => m.MedianGradRatio))));
            cells.Add(measures.Count == 0 ? "–" : $"{Format(Median(measures.Select(m => m.AlignKlFirst)))} -> {Format(Median(measures.Select(m => m.AlignKlLast)))}");
            cells.Add(measures.Count == 0 ? "–" : (measures.Average(m => m.Seconds) / 60).ToString("0.0", CultureInfo.InvariantCulture));
            md.AppendLine("| " + string.Join(" | ", cells) + " |");
        }

        return md.ToString();
    }

    /// <summary>
    /// One row per comparison "B vs A": the paired difference B - A in points with its 95% interval for each metric
    /// (<see cref="StudyComparison.Compare"/>; bold when the interval excludes 0).
    /// </summary>
    public static string Differences(IReadOnlyList<(string Label, IReadOnlyList<StudyModelResult> A, IReadOnlyList<StudyModelResult> B)> comparisons)
    {
        var md = new StringBuilder();
        md.AppendLine("| comparison (B - A, points) | seed pairs | " + string.Join(" | ", StudyComparison.MetricNames) + " |");
        md.AppendLine("|---|---|" + string.Concat(StudyComparison.MetricNames.Select(_ => "---|")));
        foreach (var (label, a, b) in comparisons)
        {
            var cells = new List<string> { label, b.Count.ToString(CultureInfo.InvariantCulture) };
            cells.AddRange(StudyComparison.MetricNames.Select(m => StudyComparison.Cell(StudyComparison.Compare(a, b, m))));
            md.AppendLine("| " + string.Join(" | ", cells) + " |");
        }

        return md.ToString();
    }

    /// <summary>The median of the finite values (the mean of the middle two for an even count); null when there is none.</summary>
    public static double? Median(IEnumerable<double?> values)
    {
        var list = values.Where(v => v is not null && double.IsFinite(v.Value)).Select(v => v!.Value).Order().ToList();
        if (list.Count == 0) return null;
        return list.Count % 2 == 1 ? list[list.Count / 2] : (list[(list.Count / 2) - 1] + list[list.Count / 2]) / 2;
    }

    private static string Format(double? value) => value?.ToString("0.###", CultureInfo.InvariantCulture) ?? "–";
}

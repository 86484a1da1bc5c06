using System.Globalization;
using CTCal.MainJob.Statistics;

namespace CTCal.MainJob.Study;

/// <summary>
/// The study's metrics on scored images and the paired comparison of two conditions. A metric is a subset of the
/// images and a score per image: <c>overall</c> (every image, mean of its applicable checks), <c>binding</c> /
/// <c>counting</c> / <c>spatial</c> (that category's images, its own check), <c>seen</c> / <c>held-out</c> (images of
/// prompts naming only trained colour-shape pairs, or a held-out pair; overall score).
/// </summary>
public static class StudyComparison
{
    /// <summary>The metrics, in table order.</summary>
    public static readonly IReadOnlyList<string> MetricNames = ["overall", "binding", "counting", "spatial", "seen", "held-out"];

    /// <summary>The score of <paramref name="image"/> under <paramref name="metric"/>, or null when the image is not in its subset.</summary>
    public static double? Score(StudyImage image, string metric) => metric switch
    {
        "overall" => image.Overall,
        "seen" => image.HeldOut ? null : image.Overall,
        "held-out" => image.HeldOut ? image.Overall : null,
        _ when image.Category == metric => image.Primary,
        _ => null,
    };

    /// <summary>Mean of <paramref name="metric"/> over <paramref name="images"/>; NaN when none is in its subset.</summary>
    public static double Mean(IEnumerable<StudyImage> images, string metric)
    {
        var values = images.Select(i => Score(i, metric)).Where(v => v is not null).Select(v => v!.Value).ToList();
        return values.Count == 0 ? double.NaN : values.Average();
    }

    /// <summary>
    /// Paired cluster bootstrap (<see cref="PairedBootstrap"/>) of B - A on <paramref name="metric"/>: <paramref name="a"/>
    /// and <paramref name="b"/> hold one model per fine-tune seed, paired by position (a single base model may stand on
    /// side A for every seed); units are (prompt, image seed), clustered by prompt. Null when no image is in the subset.
    /// </summary>
    /// <exception cref="ArgumentException">The models' units differ.</exception>
    public static PairedBootstrapResult? Compare(IReadOnlyList<StudyModelResult> a, IReadOnlyList<StudyModelResult> b, string metric, PairedBootstrapOptions? options = null)
    {
        if (a.Count == 1 && b.Count > 1) a = Enumerable.Repeat(a[0], b.Count).ToList();
        if (a.Count != b.Count || a.Count == 0)
            throw new ArgumentException($"{metric}: {a.Count} models against {b.Count}; need one per paired seed");
        var reference = Units(a[0], metric);
        if (reference.Count == 0) return null;
        var prompts = reference.Keys.Select(u => u.Prompt).Distinct().Order().ToArray();
        var seeds = prompts.Select(p => reference.Keys.Where(u => u.Prompt == p).Select(u => u.Seed).Order().ToArray()).ToArray();
        double[][] Table(StudyModelResult model)
        {
            var units = Units(model, metric);
            if (units.Count != reference.Count)
                throw new ArgumentException($"{metric}: model '{model.Model.Id}' has {units.Count} scored images, '{a[0].Model.Id}' {reference.Count}; they must be evaluated on the same prompts and image seeds");
            return prompts.Select((p, k) => seeds[k].Select(s => units.TryGetValue((p, s), out double v) ? v
                : throw new ArgumentException($"{metric}: model '{model.Model.Id}' has no image for prompt {p} seed {s}")).ToArray()).ToArray();
        }

        return PairedBootstrap.Compare(a.Select(Table).ToList(), b.Select(Table).ToList(), options);
    }

    /// <summary>A difference with its interval in points: <c>+3.1 [+0.4, +5.9]</c>, bold when the interval excludes 0.</summary>
    public static string Cell(PairedBootstrapResult? r)
    {
        if (r is null) return "–";
        string text = string.Create(CultureInfo.InvariantCulture, $"{Signed(r.Difference)} [{Signed(r.Low)}, {Signed(r.High)}]");
        return r.ExcludesZero ? $"**{text}**" : text;
    }

    /// <summary>The plain-words verdict of B against A on one metric.</summary>
    public static string Verdict(string b, string a, string metric, PairedBootstrapResult? r) => r is null
        ? $"{metric}: no images"
        : r.Low > 0 ? $"{metric}: {b} beats {a} by {Signed(r.Difference)} points (95% interval {Signed(r.Low)} to {Signed(r.High)})"
        : r.High < 0 ? $"{metric}: {b} is worse than {a} by {Signed(r.Difference)} points (95% interval {Signed(r.Low)} to {Signed(r.High)})"
        : $"{metric}: no difference shown between {b} and {a} ({Signed(r.Difference)} points, 95% interval {Signed(r.Low)} to {Signed(r.High)})";

    /// <summary>A fraction as signed points with one decimal.</summary>
    public static string Signed(double fraction) => (fraction * 100).ToString("+0.0;-0.0;0.0", CultureInfo.InvariantCulture);

    private static Dictionary<(int Prompt, long Seed), double> Units(StudyModelResult model, string metric)
    {
        var units = new Dictionary<(int, long), double>();
        foreach (var image in model.Images)
        {
            if (Score(image, metric) is { } v && !units.TryAdd((image.Prompt, image.Seed), v))
                throw new ArgumentException($"model '{model.Model.Id}' has two images for prompt {image.Prompt} seed {image.Seed}");
        }

        return units;
    }
}

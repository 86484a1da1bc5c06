using System.Globalization;
using System.Text;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Synthetic;

namespace CTCal.MainJob;

/// <summary>
/// Writes <c>report.md</c> (images linked by relative path, plus one PNG grid per category under <c>grids/</c>),
/// <c>report.html</c> (self-contained: images as data URIs, loss curves as inline SVG) and <c>results.json</c>.
/// </summary>
public static class ReportWriter
{
    /// <summary>Sample prompts per category shown side by side in the reports.</summary>
    public const int SamplesPerCategory = 4;

    private static readonly (string Label, string Subset, string Check)[] Columns =
    [
        ("overall", "all", "overall"),
        ("binding", "all", "binding"),
        ("counting", "all", "counting"),
        ("spatial", "all", "spatial"),
        ("seen overall", "seen", "overall"),
        ("held-out overall", "heldout", "overall"),
    ];

    public static void WriteAll(RunResults results, string folder)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteText(Path.Combine(folder, "results.json"), results.ToJson());
        var grids = WriteGrids(results, folder);
        AtomicFile.WriteText(Path.Combine(folder, "report.md"), Markdown(results, folder, grids));
        AtomicFile.WriteText(Path.Combine(folder, "report.html"), Html(results, folder));
    }

    /// <summary>The columns of the comparison grid: base, then the first seed's vanilla and CTCal models (when present).</summary>
    public static IReadOnlyList<string> GridModels(RunResults results)
    {
        var models = results.Models.Select(m => m.Model).ToHashSet();
        long seed = results.Recipe.Seeds[0];
        return new[] { "base", $"{FineTuneStage.Vanilla}-s{seed}", $"{FineTuneStage.Ctcal}-s{seed}" }.Where(models.Contains).ToList();
    }

    /// <summary>Rows of the comparison grid: up to <see cref="SamplesPerCategory"/> prompts per category x every image seed.</summary>
    public static IReadOnlyList<(PromptInfo Prompt, long Seed)> GridRows(RunResults results) =>
        results.Prompts.GroupBy(p => p.Category).SelectMany(g => g.Take(SamplesPerCategory))
            .SelectMany(p => Enumerable.Range(0, results.Recipe.ImageSeeds).Select(i => (p, results.Recipe.ImageSeedBase + i))).ToList();

    private static ImageResult? Find(RunResults results, string model, int prompt, long seed) =>
        results.Models.FirstOrDefault(m => m.Model == model)?.Images.FirstOrDefault(i => i.PromptIndex == prompt && i.Seed == seed);

    /// <summary>One PNG per category: rows prompt x seed, columns <see cref="GridModels"/>, 2 px gaps. Returns category -> relative path.</summary>
    private static Dictionary<string, string> WriteGrids(RunResults results, string folder)
    {
        var written = new Dictionary<string, string>();
        var models = GridModels(results);
        foreach (var group in GridRows(results).GroupBy(r => r.Prompt.Category))
        {
            var rows = group.Select(r => (IReadOnlyList<string?>)models.Select(m => Find(results, m, r.Prompt.Index, r.Seed)?.File).ToList()).ToList();
            if (ImageGrid.Compose(rows) is not { } grid)
            {
                continue;
            }

            string relative = $"grids/{group.Key}.png";
            AtomicFile.WriteBytes(Path.Combine(folder, relative), grid.EncodePng());
            written[group.Key] = relative;
        }

        return written;
    }

    private static string Cell(SeedStats? s, bool spread) => s is null ? "–"
        : spread && s.N > 1 ? $"{Metrics.Pct(s.Mean)} ± {Metrics.Points(s.Std)} ({Metrics.Pct(s.Min)}–{Metrics.Pct(s.Max)})" : Metrics.Pct(s.Mean);

    private static SeedStats? Get(MethodSummary m, string key) => m.Metrics.TryGetValue(key, out var s) ? s : null;

    /// <summary>The main table: one row per method (mean ± std (min–max) over seeds), columns <see cref="Columns"/>.</summary>
    public static string MarkdownTable(IReadOnlyList<MethodSummary> summaries)
    {
        var sb = new StringBuilder();
        sb.Append("| model | seeds | ").Append(string.Join(" | ", Columns.Select(c => c.Label))).AppendLine(" | layout diversity |");
        sb.Append("|---|---|").Append(string.Concat(Columns.Select(_ => "---|"))).AppendLine("---|");
        foreach (var m in summaries)
        {
            sb.Append("| ").Append(m.Method).Append(" | ").Append(m.Models.Count.ToString(CultureInfo.InvariantCulture)).Append(" | ");
            sb.Append(string.Join(" | ", Columns.Select(c => Cell(Get(m, Metrics.Key(c.Subset, c.Check)), spread: true))));
            var d = Get(m, Metrics.DiversityLayout);
            sb.Append(" | ").Append(d is null ? "–" : d.Mean.ToString("0.000", CultureInfo.InvariantCulture)).AppendLine(" |");
        }

        return sb.ToString();
    }

    /// <summary>Per category, seen vs held-out (means over seeds).</summary>
    public static string MarkdownSplitTable(IReadOnlyList<MethodSummary> summaries)
    {
        var sb = new StringBuilder();
        var checks = new[] { "overall", "binding", "counting", "spatial" };
        sb.Append("| model | ").Append(string.Join(" | ", checks.SelectMany(c => new[] { $"{c} seen", $"{c} held-out" }))).AppendLine(" |");
        sb.Append("|---|").AppendLine(string.Concat(checks.SelectMany(_ => new[] { "---|", "---|" })));
        foreach (var m in summaries)
        {
            sb.Append("| ").Append(m.Method).Append(" | ");
            sb.Append(string.Join(" | ", checks.SelectMany(c => new[] { Cell(Get(m, Metrics.Key("seen", c)), false), Cell(Get(m, Metrics.Key("heldout", c)), false) })));
            sb.AppendLine(" |");
        }

        return sb.ToString();
    }

    private static string Markdown(RunResults r, string folder, IReadOnlyDictionary<string, string> grids)
    {
        var sb = new StringBuilder();
        sb.AppendLine(r.Quick ? "# CTCal main job — SMOKE RUN (--quick)" : $"# CTCal main job — {r.Label}").AppendLine();
        if (r.Quick)
        {
            sb.AppendLine("> This is a smoke run (`--quick`): few steps, few prompts, two seeds. Its numbers check that the chain works; they are not a result.").AppendLine();
        }

        sb.AppendLine($"Started {r.StartedUtc:u}, total wall time {Seconds(r.TotalSeconds)}.").AppendLine();
        sb.AppendLine("## Verdict").AppendLine();
        foreach (var v in r.Verdicts)
        {
            sb.AppendLine($"- {v.Text}");
        }

        sb.AppendLine().AppendLine("## Scores (mean ± std over fine-tune seeds, in points, and min–max)").AppendLine();
        sb.AppendLine(MarkdownTable(r.Summaries));
        sb.AppendLine("### Seen vs held-out colour-shape pairs (means over seeds)").AppendLine();
        sb.AppendLine(MarkdownSplitTable(r.Summaries));
        sb.AppendLine("### Every model").AppendLine();
        sb.AppendLine(ModelTable(r));
        sb.AppendLine("## Images: " + string.Join(" | ", GridModels(r)) + " (same prompts and image seeds)").AppendLine();
        foreach (var (category, relative) in grids)
        {
            sb.AppendLine($"**{category}** ([grid]({relative})): rows are, in order:").AppendLine();
            foreach (var (prompt, seed) in GridRows(r).Where(x => x.Prompt.Category == category))
            {
                sb.AppendLine($"- `{prompt.Prompt}`{(prompt.HeldOutPair ? " (held-out pair)" : "")}, seed {seed}");
            }

            sb.AppendLine().AppendLine($"![{category}]({relative})").AppendLine();
        }

        sb.AppendLine("| prompt | seed | " + string.Join(" | ", GridModels(r)) + " |");
        sb.AppendLine("|---|---|" + string.Concat(GridModels(r).Select(_ => "---|")));
        foreach (var (prompt, seed) in GridRows(r))
        {
            sb.Append($"| {prompt.Prompt} | {seed} | ");
            sb.AppendLine(string.Join(" | ", GridModels(r).Select(m => Find(r, m, prompt.Index, seed) is { } i
                ? $"![]({Path.GetRelativePath(folder, i.File).Replace('\\', '/')}) {(i.Score.Overall >= 1 ? "✓" : "✗")}" : "–")) + " |");
        }

        sb.AppendLine().AppendLine("## Loss curves").AppendLine();
        sb.AppendLine("See report.html for the plot. Final losses (mean of the last 10% of steps):").AppendLine();
        sb.AppendLine("| model | steps | final loss | final diffusion loss | wall time | trainer runs |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var f in r.FineTunes)
        {
            sb.AppendLine($"| {f.Spec.ModelId} | {f.Loss.Count} | {Final(f.Loss, p => p.Loss)} | {Final(f.Loss, p => p.Diffusion)} | {Seconds(f.Seconds)} | {f.Attempts} |");
        }

        sb.AppendLine().AppendLine(ConfigurationMarkdown(r));
        return sb.ToString();
    }

    private static string ModelTable(RunResults r)
    {
        var sb = new StringBuilder();
        sb.Append("| model | ").Append(string.Join(" | ", Columns.Select(c => c.Label))).AppendLine(" | images |");
        sb.Append("|---|").Append(string.Concat(Columns.Select(_ => "---|"))).AppendLine("---|");
        foreach (var m in r.Models)
        {
            sb.Append("| ").Append(m.Model).Append(" | ");
            sb.Append(string.Join(" | ", Columns.Select(c => m.Metrics.TryGetValue(Metrics.Key(c.Subset, c.Check), out double v) ? Metrics.Pct(v) : "–")));
            sb.Append(" | ").Append(m.Images.Count.ToString(CultureInfo.InvariantCulture)).AppendLine(" |");
        }

        return sb.ToString();
    }

    private static string Final(IReadOnlyList<LossPoint> loss, Func<LossPoint, double?> pick)
    {
        var values = loss.Skip(loss.Count - Math.Max(1, loss.Count / 10)).Select(pick).Where(v => v is not null).Select(v => v!.Value).ToList();
        return values.Count == 0 ? "–" : values.Average().ToString("0.0000", CultureInfo.InvariantCulture);
    }

    private static string Seconds(double s) => s >= 120
        ? string.Create(CultureInfo.InvariantCulture, $"{s / 60:0.0} min ({s:0} s)")
        : string.Create(CultureInfo.InvariantCulture, $"{s:0.0} s");

    /// <summary>The alignment weights a CTCal weight stands for (<see cref="FineTuneJob.WithAlignmentWeight"/>).</summary>
    private static string AlignmentWeights(double weight)
    {
        var job = FineTuneJob.Defaults.WithAlignmentWeight(weight);
        return $"pixel {Num(job.PixelWeight)}, semantic {Num(job.SemanticWeight)}, balance {Num(job.BalanceWeight)}";
    }

    private static string ConfigurationMarkdown(RunResults r)
    {
        var sb = new StringBuilder();
        var rc = r.Recipe;
        sb.AppendLine("## Configuration").AppendLine();
        sb.AppendLine($"- recipe: steps {rc.Steps}, lr {Num(rc.LearningRate)} (constant after {rc.Warmup} warmup steps), batch {rc.BatchSize}, resolution {rc.Resolution}, " +
            $"seeds {string.Join(", ", rc.Seeds)}, CTCal weight {Num(rc.CtcalWeight)} ({AlignmentWeights(rc.CtcalWeight)} unless set)");
        sb.AppendLine($"- generation: {rc.Scheduler}, {rc.SamplingSteps} steps, guidance {Num(rc.Guidance)}, {rc.ImageSeeds} image seed(s) from {rc.ImageSeedBase}, " +
            $"{r.Prompts.Count} prompts ({string.Join(", ", r.Prompts.GroupBy(p => p.Category).Select(g => $"{g.Key} {g.Count()} ({g.Count(p => p.HeldOutPair)} held-out)"))})");
        sb.AppendLine($"- base model: {r.Configuration.BaseModel}{(r.Configuration.FromScratch ? " (trained from scratch by this run)" : "")}; world seed {r.Configuration.WorldSeed}, {r.Configuration.DatasetImages} training images");
        sb.AppendLine($"- trainer threads {r.Configuration.Threads}, {r.Configuration.Parallel} fine-tunes / generations at a time; extra trainer arguments: {(r.Configuration.TrainerOverrides.Count == 0 ? "none" : string.Join(' ', r.Configuration.TrainerOverrides))}");
        sb.AppendLine($"- machine: {r.Machine.Cpu}, {r.Machine.Processors} processors, load average {(r.Machine.LoadAverage1Min is { } l ? l.ToString("0.00", CultureInfo.InvariantCulture) : "n/a")} at start, {r.Machine.Os}, {r.Machine.Framework}");
        sb.AppendLine().AppendLine("Fine-tune jobs (results.json has each whole; here the values that differ from the trainer's defaults, but model, data and out):").AppendLine();
        foreach (var (model, job) in r.Configuration.FineTuneJobs)
        {
            var changed = FineTuneJobJson.ChangedSettings(job).Where(c => c.Key is not ("model" or "data" or "out" or "method"));
            sb.AppendLine($"- `{model}`: `--method {job.Method} {string.Join(' ', changed)}`");
        }

        sb.AppendLine().AppendLine("### Wall time per stage").AppendLine();
        sb.AppendLine("| stage | wall time |").AppendLine("|---|---|");
        foreach (var s in r.Stages)
        {
            sb.AppendLine($"| {s.Stage} | {Seconds(s.Seconds)} |");
        }

        sb.AppendLine($"| **total** | {Seconds(r.TotalSeconds)} |");
        return sb.ToString();
    }

    private static string Num(double v) => v.ToString("G4", CultureInfo.InvariantCulture);

    private static string Html(RunResults r, string folder)
    {
        var sb = new StringBuilder();
        sb.AppendLine("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>CTCal main job</title><style>");
        sb.AppendLine("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}" +
            "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}" +
            "img.px{width:128px;height:128px;image-rendering:pixelated}.smoke{background:#fee;border:2px solid #c00;padding:.5em}" +
            "code{background:#f4f4f4}.ok{color:#080}.bad{color:#a00}");
        sb.AppendLine("</style></head><body>");
        sb.AppendLine(r.Quick ? "<h1>CTCal main job — SMOKE RUN (--quick)</h1><p class=\"smoke\">This is a smoke run: few steps, few prompts, two seeds. Its numbers check that the chain works; they are not a result.</p>"
            : $"<h1>CTCal main job — {E(r.Label)}</h1>");
        sb.AppendLine($"<p>Started {r.StartedUtc:u}, total wall time {E(Seconds(r.TotalSeconds))}.</p>");
        sb.AppendLine("<h2>Verdict</h2><ul>");
        foreach (var v in r.Verdicts)
        {
            sb.AppendLine($"<li>{E(v.Text)}</li>");
        }

        sb.AppendLine("</ul><h2>Scores (mean ± std over fine-tune seeds, in points, and min–max)</h2>");
        sb.AppendLine(MarkdownToHtmlTable(MarkdownTable(r.Summaries)));
        sb.AppendLine("<h3>Seen vs held-out colour-shape pairs (means over seeds)</h3>");
        sb.AppendLine(MarkdownToHtmlTable(MarkdownSplitTable(r.Summaries)));
        sb.AppendLine("<h3>Every model</h3>");
        sb.AppendLine(MarkdownToHtmlTable(ModelTable(r)));

        sb.AppendLine("<h2>Images (same prompts and image seeds)</h2><table><tr><th>prompt</th><th>seed</th>");
        var models = GridModels(r);
        foreach (string m in models)
        {
            sb.Append($"<th>{E(m)}</th>");
        }

        sb.AppendLine("</tr>");
        foreach (var (prompt, seed) in GridRows(r))
        {
            sb.Append($"<tr><td>{E(prompt.Prompt)}{(prompt.HeldOutPair ? " <i>(held-out pair)</i>" : "")}<br><small>{E(prompt.Category)}</small></td><td>{seed}</td>");
            foreach (string m in models)
            {
                var image = Find(r, m, prompt.Index, seed);
                if (image is null || !File.Exists(image.File))
                {
                    sb.Append("<td>–</td>");
                    continue;
                }

                string data = Convert.ToBase64String(File.ReadAllBytes(image.File));
                bool ok = image.Score.Overall >= 1;
                sb.Append($"<td><img class=\"px\" alt=\"{E(m)}\" src=\"data:image/png;base64,{data}\"><br><span class=\"{(ok ? "ok" : "bad")}\">{(ok ? "pass" : "fail")} {Metrics.Pct(image.Score.Overall)}</span></td>");
            }

            sb.AppendLine("</tr>");
        }

        sb.AppendLine("</table><h2>Loss curves</h2>");
        sb.AppendLine(LossSvg(r.FineTunes, l => l.Loss, "total loss (per step)"));
        sb.AppendLine(LossSvg(r.FineTunes, l => l.Diffusion, "diffusion loss (the part both methods share)"));
        sb.AppendLine(MarkdownToHtmlBody(ConfigurationMarkdown(r)));
        sb.AppendLine("</body></html>");
        _ = folder;
        return sb.ToString();
    }

    /// <summary>HTML-escapes markup characters only (the page is UTF-8, so ± and – stay readable in the source).</summary>
    private static string E(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
        .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&quot;", StringComparison.Ordinal);

    /// <summary>Loss curves of every fine-tune as an inline SVG: vanilla blue, CTCal red; smoothed by a 10-step moving mean.</summary>
    public static string LossSvg(IReadOnlyList<FineTuneOutcome> runs, Func<LossPoint, double?> pick, string title)
    {
        var series = runs.Select(f => (f.Spec, Points: f.Loss.Where(p => pick(p) is { } v && double.IsFinite(v)).Select(p => (X: (double)p.Step, Y: pick(p)!.Value)).ToList()))
            .Where(s => s.Points.Count > 0).ToList();
        const int w = 640, h = 300, left = 60, right = 150, top = 24, bottom = 36;
        var sb = new StringBuilder();
        sb.AppendLine($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">");
        sb.AppendLine($"<text x=\"{left}\" y=\"14\" font-size=\"13\">{E(title)}</text>");
        if (series.Count == 0)
        {
            sb.AppendLine($"<text x=\"{left}\" y=\"{h / 2}\">no data</text></svg>");
            return sb.ToString();
        }

        var smoothed = series.Select(s => (s.Spec, Points: Smooth(s.Points, 10))).ToList();
        double xMax = Math.Max(1, smoothed.Max(s => s.Points.Max(p => p.X)));
        double yMin = smoothed.Min(s => s.Points.Min(p => p.Y)), yMax = smoothed.Max(s => s.Points.Max(p => p.Y));
        if (yMax - yMin < 1e-12)
        {
            yMax = yMin + 1e-6;
        }

        string X(double x) => (left + x / xMax * (w - left - right)).ToString("0.0", CultureInfo.InvariantCulture);
        string Y(double y) => (top + (1 - (y - yMin) / (yMax - yMin)) * (h - top - bottom)).ToString("0.0", CultureInfo.InvariantCulture);
        sb.AppendLine($"<rect x=\"{left}\" y=\"{top}\" width=\"{w - left - right}\" height=\"{h - top - bottom}\" fill=\"none\" stroke=\"#999\"/>");
        sb.AppendLine($"<text x=\"{left - 4}\" y=\"{Y(yMax)}\" text-anchor=\"end\">{yMax.ToString("G3", CultureInfo.InvariantCulture)}</text>");
        sb.AppendLine($"<text x=\"{left - 4}\" y=\"{Y(yMin)}\" text-anchor=\"end\">{yMin.ToString("G3", CultureInfo.InvariantCulture)}</text>");
        sb.AppendLine($"<text x=\"{left}\" y=\"{h - 18}\">0</text><text x=\"{w - right}\" y=\"{h - 18}\" text-anchor=\"end\">{xMax.ToString("0", CultureInfo.InvariantCulture)}</text>");
        sb.AppendLine($"<text x=\"{(left + w - right) / 2}\" y=\"{h - 4}\" text-anchor=\"middle\">step</text>");
        int legend = 0;
        foreach (var (job, points) in smoothed)
        {
            string colour = job.Method == FineTuneStage.Ctcal ? "#c0392b" : "#2471a3";
            string dash = (legend / 2 % 3) switch { 0 => "", 1 => " stroke-dasharray=\"6 3\"", _ => " stroke-dasharray=\"2 2\"" };
            sb.Append($"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"{dash} points=\"");
            sb.Append(string.Join(' ', points.Select(p => $"{X(p.X)},{Y(p.Y)}")));
            sb.AppendLine("\"/>");
            int ly = top + 10 + legend * 16;
            sb.AppendLine($"<line x1=\"{w - right + 10}\" y1=\"{ly}\" x2=\"{w - right + 34}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/><text x=\"{w - right + 38}\" y=\"{ly + 4}\">{E(job.ModelId)}</text>");
            legend++;
        }

        sb.AppendLine("</svg>");
        return sb.ToString();
    }

    private static List<(double X, double Y)> Smooth(List<(double X, double Y)> points, int window)
    {
        var result = new List<(double, double)>(points.Count);
        for (int i = 0; i < points.Count; i++)
        {
            int from = Math.Max(0, i - window + 1);
            double mean = 0;
            for (int j = from; j <= i; j++)
            {
                mean += points[j].Y;
            }

            result.Add((points[i].X, mean / (i - from + 1)));
        }

        return result;
    }

    /// <summary>Renders a pipe table written by this class as an HTML table (cells HTML-encoded).</summary>
    public static string MarkdownToHtmlTable(string markdown)
    {
        var lines = markdown.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).Where(l => l.StartsWith('|')).ToList();
        var sb = new StringBuilder("<table>");
        for (int i = 0; i < lines.Count; i++)
        {
            if (i == 1 && lines[i].Replace("|", "").Replace("-", "").Trim().Length == 0)
            {
                continue;
            }

            string tag = i == 0 ? "th" : "td";
            var cells = lines[i].Trim('|').Split('|').Select(c => c.Trim());
            sb.Append("<tr>").Append(string.Concat(cells.Select(c => $"<{tag}>{E(c.Replace("**", ""))}</{tag}>"))).Append("</tr>");
        }

        return sb.Append("</table>").ToString();
    }

    /// <summary>The configuration section (headings, bullet lists, tables) as HTML.</summary>
    private static string MarkdownToHtmlBody(string markdown)
    {
        var sb = new StringBuilder();
        var table = new StringBuilder();
        bool inList = false;
        foreach (string raw in markdown.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (line.StartsWith('|'))
            {
                table.AppendLine(line);
                continue;
            }

            if (table.Length > 0)
            {
                sb.AppendLine(MarkdownToHtmlTable(table.ToString()));
                table.Clear();
            }

            if (line.StartsWith("- ", StringComparison.Ordinal))
            {
                if (!inList)
                {
                    sb.Append("<ul>");
                    inList = true;
                }

                sb.Append("<li>").Append(E(line[2..]).Replace("`", "")).AppendLine("</li>");
                continue;
            }

            if (inList)
            {
                sb.Append("</ul>");
                inList = false;
            }

            if (line.StartsWith("### ", StringComparison.Ordinal))
            {
                sb.AppendLine($"<h3>{E(line[4..])}</h3>");
            }
            else if (line.StartsWith("## ", StringComparison.Ordinal))
            {
                sb.AppendLine($"<h2>{E(line[3..])}</h2>");
            }
            else if (line.Length > 0)
            {
                sb.AppendLine($"<p>{E(line).Replace("`", "")}</p>");
            }
        }

        if (inList)
        {
            sb.Append("</ul>");
        }

        if (table.Length > 0)
        {
            sb.AppendLine(MarkdownToHtmlTable(table.ToString()));
        }

        return sb.ToString();
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Core.IO;
using Spectre.Console;

namespace CTCal.MainJob;

/// <summary>One point of a sweep and its scores.</summary>
public sealed record SweepPoint(string Model, string Method, double LearningRate, double? CtcalWeight, IReadOnlyDictionary<string, double> Metrics, double? FinalLoss, double Seconds);

/// <summary>A finished sweep: the shared recipe, the points, wall time.</summary>
public sealed record SweepResults(MainJobRecipe Recipe, IReadOnlyList<double> LearningRates, IReadOnlyList<double> CtcalWeights, IReadOnlyList<SweepPoint> Points, double TotalSeconds);

/// <summary>
/// <c>ctcal-main sweep</c>: a grid over learning rates (both methods) and CTCal weights (CTCal only) on the recipe's first
/// seed, sharing the dataset, base and host of a normal run; scored like the main job on its (usually reduced) prompt
/// set. Vanilla gets every learning rate too, so both methods are tuned over the same budget of settings.
/// </summary>
public static class Sweep
{
    public static IReadOnlyList<FineTuneSpec> Jobs(long seed, IReadOnlyList<double> lrs, IReadOnlyList<double> weights)
    {
        static string F(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
        var jobs = new List<FineTuneSpec>();
        foreach (double lr in lrs)
        {
            jobs.Add(new FineTuneSpec($"{FineTuneStage.Vanilla}-lr{F(lr)}", FineTuneStage.Vanilla, seed, lr, 0));
            foreach (double w in weights)
            {
                jobs.Add(new FineTuneSpec($"{FineTuneStage.Ctcal}-lr{F(lr)}-w{F(w)}", FineTuneStage.Ctcal, seed, lr, w));
            }
        }

        return jobs;
    }

    public static async Task<SweepResults> RunAsync(IAnsiConsole console, MainJobOptions options, IReadOnlyList<double> lrs, IReadOnlyList<double> weights, CancellationToken ct)
    {
        options.Validate();
        if (lrs.Count == 0 || weights.Count == 0 || lrs.Any(l => !(l > 0)) || weights.Any(w => !(w >= 0)))
        {
            throw new ArgumentException("sweep: --lr needs positive values and --ctcal-weight non-negative ones, at least one of each");
        }

        using var log = RunLog.To(options.OutputFolder);
        var clock = Stopwatch.StartNew();
        var runner = new MainJobRunner(console);
        using var prepared = await runner.PrepareAsync(options, ct);
        var jobs = Jobs(options.Recipe.Seeds[0], lrs, weights);
        console.MarkupLine(Markup.Escape($"sweep: {jobs.Count} fine-tunes of {options.Recipe.Steps} steps, {prepared.Prompts.Count} prompts x {options.Recipe.ImageSeeds} image seeds each"));
        var outcomes = await runner.FineTuneAsync(options, prepared, jobs, ct);
        var scores = await runner.GenerateAsync(options, prepared, ["base", .. jobs.Select(j => j.ModelId)], ct);
        var points = new List<SweepPoint> { new("base", "base", 0, null, scores[0].Metrics, null, 0) };
        foreach (var o in outcomes)
        {
            var tail = o.Loss.Skip(o.Loss.Count - Math.Max(1, o.Loss.Count / 10)).Select(p => p.Diffusion ?? p.Loss).ToList();
            points.Add(new SweepPoint(o.Spec.ModelId, o.Spec.Method, o.Spec.LearningRate, o.Spec.Method == FineTuneStage.Ctcal ? o.Spec.CtcalWeight : null,
                scores.First(s => s.Model == o.Spec.ModelId).Metrics, tail.Count > 0 ? tail.Average() : null, o.Seconds));
        }

        var results = new SweepResults(options.Recipe, lrs, weights, points, clock.Elapsed.TotalSeconds);
        AtomicFile.WriteText(Path.Combine(options.OutputFolder, "sweep.json"), JsonSerializer.Serialize(results, RunResults.Json));
        string markdown = Markdown(results);
        AtomicFile.WriteText(Path.Combine(options.OutputFolder, "sweep.md"), markdown);
        console.WriteLine(markdown);
        return results;
    }

    public static string Markdown(SweepResults r)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# Sweep: {r.Recipe.Steps} steps, seed {r.Recipe.Seeds[0]}, batch {r.Recipe.BatchSize}, {r.TotalSeconds:0} s").AppendLine();
        sb.AppendLine("| model | method | lr | CTCal weight | overall | binding | counting | spatial | held-out overall | final diffusion loss | wall time |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var p in r.Points.OrderByDescending(p => p.Metrics.TryGetValue("all.overall", out double v) ? v : -1))
        {
            string M(string key) => p.Metrics.TryGetValue(key, out double v) ? Metrics.Pct(v) : "–";
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {p.Model} | {p.Method} | {(p.Method == "base" ? "–" : p.LearningRate.ToString("G4", CultureInfo.InvariantCulture))} | {(p.CtcalWeight is { } w ? w.ToString("G4", CultureInfo.InvariantCulture) : "–")} | {M("all.overall")} | {M("all.binding")} | {M("all.counting")} | {M("all.spatial")} | {M("heldout.overall")} | {(p.FinalLoss is { } l ? l.ToString("0.0000", CultureInfo.InvariantCulture) : "–")} | {p.Seconds:0} s |"));
        }

        return sb.ToString();
    }
}

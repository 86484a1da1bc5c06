using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.Diffusers;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Export;
using CTCal.Export.Graphs;
using CTCal.Hosting;
using CTCal.MainJob.Statistics;
using CTCal.MainJob.Study;
using CTCal.Synthetic;

namespace CTCal.MainJob.StepCache;

/// <summary>Options of <c>ctcal-main stepcache</c>.</summary>
public sealed record StepCacheBenchOptions
{
    /// <summary>Output folder (<c>stepcache.md</c>, <c>stepcache.json</c>, <c>host/</c> with the exported models).</summary>
    public required string OutputFolder { get; init; }

    /// <summary>The diffusers base model (default <c>assets/base-model</c>).</summary>
    public required string BaseModel { get; init; }

    /// <summary>Step-cache branches tried on the validation prompts (null: every up-block layer of the UNet).</summary>
    public IReadOnlyList<int>? Branches { get; init; }

    /// <summary>Intervals measured on the test prompts (1 = no caching, the reference).</summary>
    public IReadOnlyList<int> Intervals { get; init; } = [1, 2, 3];

    /// <summary>The interval the branch is chosen at on the validation prompts.</summary>
    public int ChoiceInterval { get; init; } = 2;

    /// <summary>Largest drop of the validation overall score (points) the chosen branch may have at <see cref="ChoiceInterval"/>.</summary>
    public double ValidationTolerance { get; init; } = 1.0;

    /// <summary>A branch given instead of choosing one on the validation prompts.</summary>
    public int? Branch { get; init; }

    /// <summary>Images per validation prompt and per test prompt (seeds from <see cref="ImageSeedBase"/>).</summary>
    public int ValidationSeeds { get; init; } = 2;

    public int TestSeeds { get; init; } = 4;

    /// <summary>Prompts per category of each split (null: all).</summary>
    public int? PromptsPerCategory { get; init; }

    /// <summary>DDIM steps, guidance and the first image seed: the study's evaluation settings.</summary>
    public int SamplingSteps { get; init; } = 25;

    public double Guidance { get; init; } = 5.0;

    public long ImageSeedBase { get; init; } = 1000;

    /// <summary>ONNX Runtime intra-op threads per session; generations run one at a time.</summary>
    public int Threads { get; init; } = 1;
}

/// <summary>
/// <c>ctcal-main stepcache</c>: step caching (DeepCache) through the plugin on the embedded world. Exports the base with
/// the step-cache graphs of each branch; chooses the branch on the <b>validation</b> prompts (the shallowest whose overall
/// score at <see cref="StepCacheBenchOptions.ChoiceInterval"/> is within <see cref="StepCacheBenchOptions.ValidationTolerance"/>
/// points of no caching); then, on the <b>test</b> prompts with paired image seeds, generates every prompt at each interval
/// in turn (the order rotating per prompt, so all intervals see the same load) and reports per interval the UNet FLOPs per
/// image (counted by the exporter's graph walk), the median seconds per image, the median of the per-prompt speed-ups over
/// interval 1, the overall and per-category scores of the world's evaluator, and the overall difference to interval 1
/// with its 95% paired prompt-cluster bootstrap interval. Writes <c>stepcache.md</c> and <c>stepcache.json</c>.
/// </summary>
public static class StepCacheBench
{
    private sealed record Config(string Label, string Model, int Branch, int Interval);

    /// <summary>One prompt's images of one configuration: overall and primary scores per image, and the seconds of the whole request.</summary>
    private sealed record PromptRun(int Prompt, double[] Overall, double[] Primary, double Seconds);

    /// <summary>The figures of one configuration.</summary>
    public sealed record Row(string Label, int Branch, int Interval, int Images, double UnetGflopsPerImage, double FlopRatio, double MedianSecondsPerImage,
        double? MedianSpeedup, double Overall, IReadOnlyDictionary<string, double> PrimaryByCategory, double? DifferencePoints, double? Low, double? High);

    /// <summary>What <c>stepcache.json</c> holds.</summary>
    public sealed record Report(string Started, double? LoadStart, double? LoadEnd, int ChosenBranch, string Choice, IReadOnlyList<Row> Validation,
        IReadOnlyList<Row> Test, int ValidationPrompts, int TestPrompts, int SamplingSteps, double Guidance, int Threads);

    public static async Task<Report> RunAsync(StepCacheBenchOptions o, Action<string> say, CancellationToken ct)
    {
        Validate(o);
        string started = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture);
        double? loadStart = MachineInfo.LoadAverage();
        say($"stepcache: load average {Fmt(loadStart)} at start, {Environment.ProcessorCount} processors");

        var config = UNetConfig.Load(Path.Combine(o.BaseModel, "unet", "config.json"));
        int upLayers = UNetGraph.UpLayerCount(config);
        var branches = o.Branch is { } given ? [given] : (o.Branches ?? Enumerable.Range(1, upLayers).ToList());
        if (branches.Any(b => b < 1 || b > upLayers))
            throw new ArgumentException($"--branches: each must be 1 to {upLayers} for {o.BaseModel} (its up-block layers), got {string.Join(",", branches)}");

        // The study's prompt split of the base's world (StudySettings defaults): validation chooses, test reports.
        var study = new StudySettings { OutputFolder = o.OutputFolder, BaseModel = o.BaseModel };
        var worldOptions = DatasetStage.WorldFor(BaseRecipeInfo.Read(o.BaseModel), new MainJobRecipe { DatasetCount = study.DatasetCount });
        var split = PromptSplit.Create(SyntheticWorld.Create(worldOptions), study.Split);
        var validation = Take(split.Validation, o.PromptsPerCategory);
        var test = Take(split.Test, o.PromptsPerCategory);
        int resolution = worldOptions.ImageSize;
        say($"stepcache: {validation.Count} validation and {test.Count} test prompts, {resolution} px, {o.SamplingSteps} DDIM steps, guidance {Fmt(o.Guidance)}");

        Directory.CreateDirectory(o.OutputFolder);
        using var host = HostWorkspace.Open(Path.Combine(o.OutputFolder, "host"), BuildInfo.PluginFolder(), o.Threads,
            new NLogSink("ctcal-main.host"), id => new NLogSink($"plugin.{id}"));
        var flops = new Dictionary<int, (double Full, double Shallow)>();
        foreach (int b in branches.Distinct())
        {
            OnnxExporter.Export(new ExportOptions { ModelFolder = o.BaseModel, OutputFolder = Path.Combine(host.ModelsFolder, ModelId(b)), StepCacheBranch = b }, null, ct);
            int latent = resolution * config.SampleSize / (OnnxModelManifest.TryRead(Path.Combine(host.ModelsFolder, ModelId(b)))!.Width ?? resolution);
            flops[b] = (UNetGraph.Flops(config, latent, latent, 77), UNetGraph.Flops(config, latent, latent, 77, b, shallow: true));
            say($"stepcache: exported branch {b}: full UNet {flops[b].Full / 1e9:0.000} GFLOPs, shallow {flops[b].Shallow / 1e9:0.000} GFLOPs per call ({flops[b].Shallow / flops[b].Full:P1})");
        }

        var evaluator = new Evaluator();
        int chosen;
        string choice;
        List<Row> validationRows = [];
        if (o.Branch is { } fixedBranch)
        {
            chosen = fixedBranch;
            choice = $"branch {fixedBranch} given (--branch); no validation run";
        }
        else
        {
            var configs = new List<Config> { new("no caching", ModelId(branches[0]), branches[0], 1) };
            configs.AddRange(branches.Select(b => new Config($"branch {b}, N = {o.ChoiceInterval}", ModelId(b), b, o.ChoiceInterval)));
            var runs = await RunAllAsync(host.Generator, configs, validation, o, o.ValidationSeeds, resolution, evaluator, "validation", say, ct);
            validationRows = Rows(configs, runs, validation, flops, o).ToList();
            double reference = validationRows[0].Overall;
            var fine = validationRows.Skip(1).Where(r => (reference - r.Overall) * 100 <= o.ValidationTolerance).OrderBy(r => r.Branch).FirstOrDefault();
            chosen = fine?.Branch ?? validationRows.Skip(1).OrderByDescending(r => r.Overall).ThenBy(r => r.Branch).First().Branch;
            choice = fine is not null
                ? $"branch {chosen}: the shallowest whose validation overall at N = {o.ChoiceInterval} is within {Fmt(o.ValidationTolerance)} points of no caching"
                : $"branch {chosen}: no branch within {Fmt(o.ValidationTolerance)} points at N = {o.ChoiceInterval} on validation; the best-scoring one";
        }

        say($"stepcache: {choice}");
        var testConfigs = o.Intervals.Select(n => new Config(n == 1 ? "N = 1 (no caching)" : $"N = {n}", ModelId(chosen), chosen, n)).ToList();
        var testRuns = await RunAllAsync(host.Generator, testConfigs, test, o, o.TestSeeds, resolution, evaluator, "test", say, ct);
        var testRows = Rows(testConfigs, testRuns, test, flops, o).ToList();
        double? loadEnd = MachineInfo.LoadAverage();
        var report = new Report(started, loadStart, loadEnd, chosen, choice, validationRows, testRows, validation.Count, test.Count, o.SamplingSteps, o.Guidance, o.Threads);
        AtomicFile.WriteText(Path.Combine(o.OutputFolder, "stepcache.json"), JsonSerializer.Serialize(report, RunResults.Json));
        string markdown = Markdown(report);
        AtomicFile.WriteText(Path.Combine(o.OutputFolder, "stepcache.md"), markdown);
        say(markdown);
        return report;
    }

    private static void Validate(StepCacheBenchOptions o)
    {
        if (o.Intervals.Count == 0 || o.Intervals.Any(n => n < 1 || n > 100) || o.Intervals[0] != 1)
            throw new ArgumentException($"--intervals: whole numbers from 1 to 100, starting with 1 (the reference), got {string.Join(",", o.Intervals)}");
        if (o.ChoiceInterval is < 2 or > 100) throw new ArgumentException($"--choice-interval must be 2 to 100, got {o.ChoiceInterval}");
        if (o.ValidationSeeds < 1 || o.TestSeeds < 1) throw new ArgumentException($"--validation-seeds and --test-seeds must be >= 1, got {o.ValidationSeeds}, {o.TestSeeds}");
        if (o.SamplingSteps < 1) throw new ArgumentException($"--sampling-steps must be >= 1, got {o.SamplingSteps}");
        if (o.PromptsPerCategory is < 1) throw new ArgumentException($"--prompts must be >= 1, got {o.PromptsPerCategory}");
        if (o.Threads < 1) throw new ArgumentException($"--threads must be >= 1, got {o.Threads}");
        if (!File.Exists(Path.Combine(o.BaseModel, "unet", "config.json")))
            throw new ArgumentException($"--base: {o.BaseModel} has no unet/config.json (step caching is for UNet models)");
    }

    private static string ModelId(int branch) => $"base-branch{branch}";

    private static List<EvalPrompt> Take(IReadOnlyList<EvalPrompt> prompts, int? perCategory) =>
        perCategory is { } k ? prompts.GroupBy(p => p.Category).SelectMany(g => g.Take(k)).ToList() : prompts.ToList();

    /// <summary>
    /// Every prompt at every configuration, one request at a time; per prompt the configurations run in an order rotated
    /// by the prompt index, so none is always first. One warm-up request per configuration first (session loads).
    /// </summary>
    private static async Task<PromptRun[][]> RunAllAsync(IImageGenerator generator, IReadOnlyList<Config> configs, IReadOnlyList<EvalPrompt> prompts,
        StepCacheBenchOptions o, int seeds, int resolution, Evaluator evaluator, string what, Action<string> say, CancellationToken ct)
    {
        GenerationRequest Request(Config c, EvalPrompt p) => new()
        {
            Model = RequestModelId.WithStepCache(c.Model, c.Interval), Prompt = p.Prompt, Width = resolution, Height = resolution, Steps = o.SamplingSteps,
            GuidanceScale = o.Guidance, Seed = o.ImageSeedBase, BatchCount = seeds, Scheduler = "ddim",
        };

        foreach (var c in configs) await generator.GenerateAsync(Request(c, prompts[0]) with { BatchCount = 1 }, null, ct);
        var runs = configs.Select(_ => new PromptRun[prompts.Count]).ToArray();
        var clock = Stopwatch.StartNew();
        for (int p = 0; p < prompts.Count; p++)
        {
            for (int k = 0; k < configs.Count; k++)
            {
                int ci = (k + p) % configs.Count;
                var watch = Stopwatch.StartNew();
                var result = await generator.GenerateAsync(Request(configs[ci], prompts[p]), null, ct);
                double seconds = watch.Elapsed.TotalSeconds;
                var scores = result.Images.Select(i => evaluator.Score(RgbaImage.Decode(i.Png, $"{what} prompt {p} seed {i.Seed}"), prompts[p].Spec)).ToList();
                runs[ci][p] = new PromptRun(p, scores.Select(s => s.Overall).ToArray(), scores.Select(s => s.Primary(prompts[p].Category)).ToArray(), seconds);
            }

            if ((p + 1) % 10 == 0 || p + 1 == prompts.Count)
                say($"stepcache: {what} {p + 1}/{prompts.Count} prompts x {configs.Count} configurations, {clock.Elapsed.TotalSeconds:0} s, load average {Fmt(MachineInfo.LoadAverage())}");
        }

        return runs;
    }

    private static IEnumerable<Row> Rows(IReadOnlyList<Config> configs, PromptRun[][] runs, IReadOnlyList<EvalPrompt> prompts,
        IReadOnlyDictionary<int, (double Full, double Shallow)> flops, StepCacheBenchOptions o)
    {
        double Gflops(Config c)
        {
            var (full, shallow) = flops[c.Branch];
            int fullSteps = Enumerable.Range(0, o.SamplingSteps).Count(s => s % c.Interval == 0);
            int calls = o.Guidance > 1 ? 2 : 1; // classifier-free guidance: both halves every step
            return calls * (fullSteps * full + (o.SamplingSteps - fullSteps) * shallow) / 1e9;
        }

        var reference = runs[0];
        double referenceGflops = Gflops(configs[0]);
        for (int c = 0; c < configs.Count; c++)
        {
            var r = runs[c];
            var perImage = r.Select(x => x.Seconds / x.Overall.Length).ToList();
            double? speedup = c == 0 ? null : StudyTables.Median(r.Select((x, p) => (double?)(reference[p].Seconds / x.Seconds)));
            double overall = r.SelectMany(x => x.Overall).Average();
            var byCategory = prompts.Select((p, i) => (Category: Metrics.Word(p.Category), Scores: r[i].Primary)).GroupBy(x => x.Category)
                .ToDictionary(g => g.Key, g => g.SelectMany(x => x.Scores).Average());
            PairedBootstrapResult? diff = c == 0 ? null : PairedBootstrap.Compare(
                [reference.Select(x => x.Overall).ToArray()], [r.Select(x => x.Overall).ToArray()], new PairedBootstrapOptions { ResampleSeeds = false });
            yield return new Row(configs[c].Label, configs[c].Branch, configs[c].Interval, r.Sum(x => x.Overall.Length), Gflops(configs[c]),
                referenceGflops / Gflops(configs[c]), StudyTables.Median(perImage.Select(v => (double?)v)) ?? double.NaN, speedup, overall, byCategory,
                diff?.Difference * 100, diff?.Low * 100, diff?.High * 100);
        }
    }

    /// <summary>The report: the validation choice, then the test table.</summary>
    public static string Markdown(Report r)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"Step caching (DeepCache) on the embedded world, {r.Started}; load average {Fmt(r.LoadStart)} at start, {Fmt(r.LoadEnd)} at end; " +
            $"{r.SamplingSteps} DDIM steps, guidance {Fmt(r.Guidance)}, {r.Threads} ONNX Runtime thread(s), one generation at a time.");
        md.AppendLine();
        if (r.Validation.Count > 0)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"Validation ({r.ValidationPrompts} prompts): {r.Choice}.");
            md.AppendLine();
            Table(md, r.Validation);
            md.AppendLine();
        }
        else
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"{r.Choice}.");
            md.AppendLine();
        }

        md.AppendLine(CultureInfo.InvariantCulture, $"Test ({r.TestPrompts} prompts, paired seeds), branch {r.ChosenBranch}:");
        md.AppendLine();
        Table(md, r.Test);
        md.AppendLine();
        md.AppendLine("UNet GFLOPs per image: both guidance halves of every step, 2 x multiply-adds of Conv, Gemm and attention MatMul (the exporter's count). " +
            "Speed-up: median over prompts of (seconds at N = 1) / (seconds at N), each prompt's configurations run back to back. " +
            "Difference: overall score minus N = 1's in points, 95% paired prompt-cluster bootstrap interval.");
        return md.ToString();
    }

    private static void Table(StringBuilder md, IReadOnlyList<Row> rows)
    {
        var categories = rows[0].PrimaryByCategory.Keys.Order(StringComparer.Ordinal).ToList();
        md.AppendLine($"| configuration | images | UNet GFLOPs / image | FLOP ratio | median s / image | speed-up | overall | {string.Join(" | ", categories)} | difference (points) |");
        md.AppendLine($"|---|---|---|---|---|---|---|{string.Concat(categories.Select(_ => "---|"))}---|");
        foreach (var row in rows)
        {
            string diff = row.DifferencePoints is { } d ? string.Create(CultureInfo.InvariantCulture, $"{d:+0.0;-0.0;0.0} [{row.Low:+0.0;-0.0;0.0}, {row.High:+0.0;-0.0;0.0}]") : "";
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {row.Label} | {row.Images} | {row.UnetGflopsPerImage:0.00} | {row.FlopRatio:0.00}x | {row.MedianSecondsPerImage:0.000} | {(row.MedianSpeedup is { } s ? $"{s:0.00}x" : "")} | {Metrics.Pct(row.Overall)} | ") +
                string.Join(" | ", categories.Select(c => Metrics.Pct(row.PrimaryByCategory[c]))) + $" | {diff} |");
        }
    }

    private static string Fmt(double? v) => v is { } x ? x.ToString("0.##", CultureInfo.InvariantCulture) : "n/a";
}

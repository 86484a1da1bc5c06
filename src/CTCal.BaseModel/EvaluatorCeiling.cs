using System.Globalization;
using System.Text;
using CTCal.Core.IO;
using CTCal.Synthetic;
using CTCal.Trainer.Networks;
using static TorchSharp.torch;

namespace CTCal.BaseModel;

/// <summary>Which scenes <see cref="EvaluatorCeiling"/> measures on.</summary>
public sealed record CeilingOptions
{
    /// <summary>The synthetic world (its evaluation prompts and training records supply the scenes).</summary>
    public SyntheticWorldOptions World { get; init; } = new() { TrainCount = 2000 };

    /// <summary>Layouts sampled per evaluation prompt (each a ground-truth scene of the prompt).</summary>
    public int LayoutsPerEvalPrompt { get; init; } = 5;

    /// <summary>Training records taken per category (the first ones of that category, in record order).</summary>
    public int TrainPerCategory { get; init; } = 200;

    /// <summary>Seed of the evaluation layouts.</summary>
    public ulong Seed { get; init; } = 7;

    /// <summary>Images per VAE batch.</summary>
    public int BatchSize { get; init; } = 50;

    /// <summary>The problems of these options, empty when valid.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (LayoutsPerEvalPrompt < 0) problems.Add($"LayoutsPerEvalPrompt {LayoutsPerEvalPrompt} must be >= 0");
        if (TrainPerCategory < 0) problems.Add($"TrainPerCategory {TrainPerCategory} must be >= 0");
        if (LayoutsPerEvalPrompt == 0 && TrainPerCategory == 0) problems.Add("no scenes: LayoutsPerEvalPrompt and TrainPerCategory are both 0");
        if (BatchSize <= 0) problems.Add($"BatchSize {BatchSize} must be > 0");
        return problems;
    }
}

/// <summary>One ground-truth scene: where it came from ("eval" or "train"), its caption, spec and layout.</summary>
public sealed record CeilingCase(string Source, string Prompt, SceneSpec Spec, Scene Scene)
{
    /// <summary>The spec's category.</summary>
    public PromptCategory Category => Spec.Category;
}

/// <summary>
/// The evaluator's ceiling on images a model can make: ground-truth renders of the world's scenes are passed through a
/// model's VAE (encode to the posterior mean, decode; diffusers <c>AutoencoderKL</c>) and scored against their own prompt.
/// A generated image can be no cleaner than its VAE decode, so a scene the evaluator misreads after the round trip is a
/// scorer error, not a model error. A scene passes when its category's check (binding, counting or spatial) passes.
/// </summary>
public static class EvaluatorCeiling
{
    /// <summary>The scenes: <see cref="CeilingOptions.LayoutsPerEvalPrompt"/> seeded layouts of every evaluation prompt, then
    /// the first <see cref="CeilingOptions.TrainPerCategory"/> training records of each category.</summary>
    public static IReadOnlyList<CeilingCase> Cases(SyntheticWorld world, CeilingOptions options)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(options);
        var sampler = new SceneSampler(world.Options.ImageSize);
        var rng = SeededRandom.ForStream(options.Seed, 1);
        var cases = new List<CeilingCase>();
        foreach (var prompt in world.EvalPrompts)
        {
            for (int k = 0; k < options.LayoutsPerEvalPrompt; k++)
                cases.Add(new CeilingCase("eval", prompt.Prompt, prompt.Spec, sampler.Sample(prompt.Spec, rng)));
        }
        foreach (var group in world.TrainRecords.GroupBy(r => r.Spec.Category).OrderBy(g => g.Key))
        {
            foreach (var r in group.Take(options.TrainPerCategory)) cases.Add(new CeilingCase("train", r.Caption, r.Spec, r.Scene));
        }
        return cases;
    }

    /// <summary>Encodes <paramref name="images"/> to the VAE's posterior mean and decodes them, in batches of <paramref name="batchSize"/>.</summary>
    public static IReadOnlyList<RgbaImage> RoundTrip(AutoencoderKL vae, IReadOnlyList<RgbaImage> images, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(vae);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var result = new List<RgbaImage>(images.Count);
        for (int start = 0; start < images.Count; start += batchSize)
        {
            var batch = images.Skip(start).Take(batchSize).ToArray();
            int w = batch[0].Width, h = batch[0].Height, plane = 3 * w * h;
            if (batch.Any(i => i.Width != w || i.Height != h)) throw new ArgumentException("round trip images must share one size", nameof(images));
            var input = new float[batch.Length * plane];
            for (int i = 0; i < batch.Length; i++) batch[i].ToPlanarRgb().CopyTo(input, i * plane);
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var decoded = vae.forward(tensor(input, [batch.Length, 3, h, w])).contiguous().data<float>().ToArray();
            for (int i = 0; i < batch.Length; i++) result.Add(RgbaImage.FromPlanarRgb(w, h, decoded.AsSpan(i * plane, plane)));
        }
        return result;
    }

    /// <summary>Measures the ceiling of <paramref name="evaluator"/> (defaults when null) through the VAE of <paramref name="vaeFolder"/>
    /// (a VAE folder, or a diffusers folder with <c>vae/</c>). <paramref name="roundTrips"/>, when given, receives the
    /// ground truth and round trip of every scene, in <see cref="Cases"/> order.</summary>
    public static CeilingReport Measure(string vaeFolder, CeilingOptions options, Evaluator? evaluator = null,
        List<(CeilingCase Case, RgbaImage Clean, RgbaImage RoundTrip)>? roundTrips = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Problems();
        if (problems.Count > 0) throw new ArgumentException("ceiling options: " + string.Join("; ", problems), nameof(options));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var files = BaseDiffusionTrainer.ResolveVae(vaeFolder);
        using var vae = PretrainedModels.LoadVae(files);
        var world = SyntheticWorld.Create(options.World with { ImageSize = vae.Config.SampleSize });
        var cases = Cases(world, options);
        var clean = cases.Select(c => Renderer.Render(c.Scene)).ToArray();
        var trips = RoundTrip(vae, clean, options.BatchSize);
        var report = Score(files.ConfigPath, cases, clean, trips, evaluator ?? new Evaluator(), watch.Elapsed.TotalSeconds);
        roundTrips?.AddRange(cases.Select((c, i) => (c, clean[i], trips[i])));
        return report with { Seconds = watch.Elapsed.TotalSeconds };
    }

    /// <summary>Scores clean renders and round trips of <paramref name="cases"/> against their own specs.</summary>
    public static CeilingReport Score(string vae, IReadOnlyList<CeilingCase> cases, IReadOnlyList<RgbaImage> clean,
        IReadOnlyList<RgbaImage> roundTrips, Evaluator evaluator, double seconds)
    {
        if (clean.Count != cases.Count || roundTrips.Count != cases.Count)
            throw new ArgumentException($"{cases.Count} cases, {clean.Count} clean images, {roundTrips.Count} round trips: counts differ");
        var cleanPass = new bool[cases.Count];
        var tripPass = new bool[cases.Count];
        var failures = new List<CeilingFailure>();
        Parallel.For(0, cases.Count, i =>
        {
            cleanPass[i] = evaluator.Score(clean[i], cases[i].Spec).Primary(cases[i].Category) == 1;
            tripPass[i] = evaluator.Score(roundTrips[i], cases[i].Spec).Primary(cases[i].Category) == 1;
        });
        for (int i = 0; i < cases.Count; i++)
        {
            if (cleanPass[i] && tripPass[i]) continue;
            var seen = evaluator.Detect(roundTrips[i]);
            failures.Add(new CeilingFailure(i, cases[i].Source, cases[i].Prompt, cases[i].Category, cleanPass[i],
                cases[i].Scene.Objects.Select(o => $"{Palette.Word(o.Color)} {Shapes.Noun(o.Shape)} at ({o.X:F1}, {o.Y:F1}) size {o.Size:F1}").ToArray(),
                seen.Select(Describe).ToArray()));
        }
        var categories = Enum.GetValues<PromptCategory>().Select(c =>
        {
            var idx = Enumerable.Range(0, cases.Count).Where(i => cases[i].Category == c).ToArray();
            return new CeilingCategory(c, idx.Length, idx.Count(i => cleanPass[i]), idx.Count(i => tripPass[i]));
        }).ToArray();
        var overall = new CeilingCategory(PromptCategory.Binding, cases.Count, cleanPass.Count(p => p), tripPass.Count(p => p));
        return new CeilingReport(vae, categories, overall, failures, seconds);
    }

    /// <summary>"purple star at (12.3, 40.1), area 210, fill 0.52, solidity 0.66, ...".</summary>
    public static string Describe(DetectedObject d) => string.Create(CultureInfo.InvariantCulture,
        $"{Palette.Word(d.Color)} {Shapes.Noun(d.Shape)} at ({d.X:F1}, {d.Y:F1}), area {d.Area}, fill {d.Fill:F2}, solidity {d.Solidity:F2}, top half {d.TopHalf:F2}, widest row {d.WidestRow:F2}, corners {d.Corners:F2}");

    /// <summary>
    /// Writes <c>ceiling.json</c>, <c>ceiling.md</c> and, when there are failures, <c>ceiling_failures.png</c> (one group per
    /// failure, four to a line, at most <paramref name="maxSheetRows"/>: ground truth | round trip | the detected objects redrawn as the
    /// evaluator classified them), each atomically, into <paramref name="folder"/>.
    /// </summary>
    public static void Write(CeilingReport report, string folder, IReadOnlyList<(CeilingCase Case, RgbaImage Clean, RgbaImage RoundTrip)> roundTrips,
        Evaluator evaluator, string command, int maxSheetRows = 60)
    {
        Directory.CreateDirectory(folder);
        CeilingReportFile.Write(folder, command, report);
        var md = new StringBuilder();
        md.AppendLine("# Evaluator ceiling on VAE round trips").AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `{command}`  ").AppendLine(CultureInfo.InvariantCulture, $"VAE: `{report.Vae}`, {report.Seconds:F0} s").AppendLine();
        md.AppendLine("Ground-truth renders of the world's scenes, encoded to the VAE's posterior mean and decoded, scored against their own prompt (a scene passes when its category's check passes).").AppendLine();
        md.AppendLine("| category | scenes | clean | round trip |").AppendLine("|---|---|---|---|");
        foreach (var c in report.Categories.Append(report.Overall))
        {
            string name = ReferenceEquals(c, report.Overall) ? "overall" : c.Category.ToString().ToLowerInvariant();
            md.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {c.Scenes} | {c.Clean:P1} ({c.CleanPassed}) | {c.RoundTrip:P1} ({c.RoundTripPassed}) |");
        }
        md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"## Failures ({report.Failures.Count}; ceiling_failures.png in reading order, four to a line)").AppendLine();
        foreach (var f in report.Failures)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"- #{f.Index} {f.Source} {f.Category.ToString().ToLowerInvariant()} \"{f.Prompt}\"{(f.CleanPassed ? "" : " (clean render fails too)")}");
            foreach (var e in f.Expected) md.AppendLine(CultureInfo.InvariantCulture, $"  - drawn: {e}");
            foreach (var d in f.Detected) md.AppendLine(CultureInfo.InvariantCulture, $"  - seen: {d}");
        }
        AtomicFile.WriteText(Path.Combine(folder, "ceiling.md"), md.ToString());
        string sheet = Path.Combine(folder, "ceiling_failures.png");
        var rows = report.Failures.Take(maxSheetRows).Select(f =>
        {
            var (c, clean, trip) = roundTrips[f.Index];
            return new[] { clean, trip, Seen(evaluator.Detect(trip), trip.Width, trip.Height) };
        }).ToList();
        if (rows.Count > 0) AtomicFile.WriteBytes(sheet, ContactSheet(rows, 2).EncodePng());
        else if (File.Exists(sheet)) File.Delete(sheet);
    }

    /// <summary>The detected objects redrawn as classified: colour and shape at the centroid, sized from the bounding box.</summary>
    public static RgbaImage Seen(IReadOnlyList<DetectedObject> objects, int width, int height)
    {
        var drawn = objects.Select(d =>
        {
            double bw = d.Bounds.MaxX - d.Bounds.MinX;
            double size = d.Shape switch
            {
                ShapeKind.Square => bw / Shapes.SquareSide,
                ShapeKind.Star => bw / (2 * Shapes.StarOuterRadius * Math.Cos(Math.PI / 10)),
                _ => bw,
            };
            return new SceneObject(d.Color, d.Shape, d.X, d.Y, size);
        }).ToArray();
        return Renderer.Render(new Scene(width, height, drawn));
    }

    /// <summary>
    /// Groups of equally sized images (one group per failure, its images side by side), <paramref name="perLine"/> groups
    /// to a line, each image scaled up <paramref name="scale"/> times (nearest); 2 px grey gutters, 8 px between groups.
    /// </summary>
    public static RgbaImage ContactSheet(IReadOnlyList<RgbaImage[]> groups, int scale, int perLine = 4)
    {
        const int gutter = 2, groupGap = 8;
        int w = groups[0][0].Width * scale, h = groups[0][0].Height * scale, n = groups.Max(r => r.Length);
        int groupWidth = n * (w + gutter), lines = (groups.Count + perLine - 1) / perLine;
        int width = Math.Min(perLine, groups.Count) * (groupWidth + groupGap) + gutter, height = lines * (h + gutter) + gutter;
        var pixels = new byte[width * height * 4];
        for (int i = 0; i < pixels.Length; i += 4) { pixels[i] = pixels[i + 1] = pixels[i + 2] = 96; pixels[i + 3] = 255; }
        for (int g = 0; g < groups.Count; g++)
        {
            for (int c = 0; c < groups[g].Length; c++)
            {
                var img = groups[g][c];
                int ox = gutter + (g % perLine) * (groupWidth + groupGap) + c * (w + gutter), oy = gutter + g / perLine * (h + gutter);
                for (int y = 0; y < h && y / scale < img.Height; y++)
                    for (int x = 0; x < w && x / scale < img.Width; x++)
                        Array.Copy(img.Pixels, ((y / scale) * img.Width + x / scale) * 4, pixels, ((oy + y) * width + ox + x) * 4, 4);
            }
        }
        return new RgbaImage(width, height, pixels);
    }
}

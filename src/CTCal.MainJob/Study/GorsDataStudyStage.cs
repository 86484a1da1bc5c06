using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Hosting;
using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>gors-data</c>: GORS-style fine-tuning data from the base model (<see cref="GorsSelection"/>). For
/// <see cref="StudySettings.GorsPromptsPerCategory"/> training-split prompts per category (<see cref="TrainingPrompts"/>),
/// the base generates <see cref="StudySettings.GorsImagesPerPrompt"/> images through the plugin's
/// <see cref="IImageGenerator"/> with seeds <see cref="StudySettings.GorsSeedBase"/> + i, disjoint from the evaluation
/// seeds (<see cref="GorsGuard"/>); the <see cref="Evaluator"/> scores each; the selection keeps the passing ones and
/// <see cref="GorsDatasetWriter"/> writes them as a dataset (<c>dataset/</c>). <c>candidates.jsonl</c> lists every
/// image with its verdict.
/// </summary>
/// <remarks>
/// Resumable: a killed run's images in <c>candidates/</c> are reused when they were made with the same settings
/// (<c>candidates/request.json</c>: base, prompts, seeds, steps, guidance, size; otherwise all are made again) and
/// every image of a prompt is there and decodes (a prompt with a missing or broken one is generated again, all its
/// images, as one seeded request); the dataset folder is rewritten from scratch.
/// </remarks>
public sealed class GorsDataStudyStage : IStudyStage
{
    /// <summary>Files and folders of the stage.</summary>
    public const string CandidatesFolder = "candidates", CandidatesFile = "candidates.jsonl", DatasetFolder = "dataset", HostFolder = "host";

    /// <summary>The settings the images in <see cref="CandidatesFolder"/> were made with (model, prompts, seeds, sampler).</summary>
    public const string RequestFile = "request.json";

    /// <summary>The world-seed stream the GORS prompts are drawn with (the world uses 1 to 3 and 1000 up, the split 4).</summary>
    public const ulong PromptStream = 5;

    private readonly StudyBase _base;

    /// <summary>The stage for <paramref name="studyBase"/> (default: the shipped base).</summary>
    public GorsDataStudyStage(StudyBase? studyBase = null) => _base = studyBase ?? StudyBase.Shipped;

    /// <summary>The base this stage works on.</summary>
    public StudyBase Setting => _base;

    /// <inheritdoc/>
    public string Name => _base.Stage("gors-data");

    /// <inheritdoc/>
    public bool Resumable => true;

    /// <summary>A training-split prompt to generate for.</summary>
    public sealed record GorsPrompt(string Id, string Prompt, SceneSpec Spec);

    /// <summary>
    /// Up to <paramref name="perCategory"/> training-split prompts per category: the world's training scene groups
    /// (one per <see cref="SceneSpec.CanonicalKey"/>, in first-appearance order) not held back by
    /// <paramref name="split"/>, shuffled with stream <see cref="PromptStream"/> of the world seed; each group's first
    /// spec in its caption (<see cref="CaptionGrammar.Caption"/>). Deterministic for the world.
    /// </summary>
    public static IReadOnlyList<GorsPrompt> TrainingPrompts(SyntheticWorld world, PromptSplit split, int perCategory)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(split);
        var rng = SeededRandom.ForStream(world.Options.Seed, PromptStream);
        var result = new List<GorsPrompt>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var groups = world.TrainSpecs.Where(s => s.Category == category && !split.IsHeldBack(s))
                .GroupBy(s => s.CanonicalKey, StringComparer.Ordinal).Select(g => g.First()).ToList();
            rng.Shuffle(groups);
            result.AddRange(groups.Take(perCategory).Select((s, i) =>
                new GorsPrompt(string.Create(CultureInfo.InvariantCulture, $"{Metrics.Word(category)}-{i:000}"), CaptionGrammar.Caption(s), s)));
        }

        return result;
    }

    /// <summary>File name of one candidate image.</summary>
    public static string ImageFileName(GorsPrompt prompt, long seed) => string.Create(CultureInfo.InvariantCulture, $"{prompt.Id}-s{seed}.png");

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var settings = context.Settings;
        var record = WorldStudyStage.StudyWorld.Read(context.FolderOf("world"));
        var world = SyntheticWorld.Create(record.Options);
        var split = PromptSplit.Create(world, record.Split);
        var guard = GorsGuard.For(world, split, settings.EvaluationSeeds);
        var seeds = Enumerable.Range(0, settings.GorsImagesPerPrompt).Select(i => settings.GorsSeedBase + i).ToList();
        var clash = seeds.Where(guard.EvaluationImageSeeds.Contains).ToList();
        if (clash.Count > 0)
            throw new ArgumentException($"GORS generation seed(s) {string.Join(", ", clash)} are evaluation image seeds");

        var prompts = TrainingPrompts(world, split, settings.GorsPromptsPerCategory);
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            int n = prompts.Count(p => p.Spec.Category == category);
            if (n < settings.GorsPromptsPerCategory)
                context.Say($"gors-data: only {n} training-split {Metrics.Word(category)} prompts in the world (asked {settings.GorsPromptsPerCategory})");
        }

        string images = Path.Combine(context.Folder, CandidatesFolder);
        // What the images are made from; a previous run's images are reused only when it is the same.
        string request = JsonSerializer.Serialize(new
        {
            baseModel = _base.Model(context), prompts = prompts.Select(p => $"{p.Id}: {p.Prompt}"), seeds, steps = settings.SamplingSteps,
            guidance = settings.Guidance, size = record.ImageSize, scheduler = settings.Scheduler,
        }, RunResults.Json);
        string requestFile = Path.Combine(images, RequestFile);
        if (Directory.Exists(images) && (!File.Exists(requestFile) || File.ReadAllText(requestFile) != request))
        {
            context.Say($"gors-data: the images in {images} were made with other settings; generating all again");
            Directory.Delete(images, recursive: true);
        }

        Directory.CreateDirectory(images);
        AtomicFile.WriteText(requestFile, request);
        var reused = prompts.ToDictionary(p => p.Id, p => Reusable(images, p, seeds));
        int toGenerate = reused.Count(r => r.Value is null);
        context.Say($"gors-data: {prompts.Count} prompts x {seeds.Count} images; {prompts.Count - toGenerate} prompts' images reused from a previous run");

        var evaluator = new Evaluator();
        var pngs = new Dictionary<string, IReadOnlyList<(long Seed, string File, RgbaImage Image)>>();
        foreach (var (id, list) in reused)
        {
            if (list is not null) pngs[id] = list;
        }

        if (toGenerate > 0)
        {
            using var host = HostWorkspace.Open(Path.Combine(context.Folder, HostFolder), BuildInfo.PluginFolder(), settings.Threads,
                new NLogSink("ctcal-main.host"), id => new NLogSink($"plugin.{id}"));
            await host.Exporter.ExportAsync(new ModelExportRequest(_base.Model(context), "base", Overwrite: true), null, ct);
            using var gate = new SemaphoreSlim(settings.Parallel);
            int finished = 0;
            var generated = await Task.WhenAll(prompts.Where(p => reused[p.Id] is null).Select(async p =>
            {
                await gate.WaitAsync(ct);
                try
                {
                    var list = await GenerateAndScoreStage.GenerateToFilesAsync(host.Generator, new GenerationRequest
                    {
                        Model = "base",
                        Prompt = p.Prompt,
                        Width = record.ImageSize,
                        Height = record.ImageSize,
                        Steps = settings.SamplingSteps,
                        GuidanceScale = settings.Guidance,
                        Seed = settings.GorsSeedBase,
                        BatchCount = settings.GorsImagesPerPrompt,
                        Scheduler = settings.Scheduler,
                    }, seed => Path.Combine(images, ImageFileName(p, seed)), ct);

                    int k = Interlocked.Increment(ref finished);
                    if (k % Math.Max(1, toGenerate / 10) == 0 || k == toGenerate)
                        context.Say($"gors-data: {k}/{toGenerate} prompts generated");
                    return (p.Id, list);
                }
                finally
                {
                    gate.Release();
                }
            }));
            host.Generator.UnloadModel("base");
            foreach (var (id, list) in generated) pngs[id] = list;
        }

        var candidates = prompts.SelectMany(p => pngs[p.Id].Select(x =>
            new GorsCandidate(p.Prompt, p.Spec, x.Seed, evaluator.Score(x.Image, p.Spec), x.File))).ToList();
        var lines = candidates.Select(c => JsonSerializer.Serialize(new
        {
            prompt = c.Prompt, category = Metrics.Word(c.Category), seed = c.GenerationSeed,
            file = Path.GetRelativePath(context.Folder, c.ImagePath), reward = c.Reward, overall = c.Score.Overall,
        }));
        AtomicFile.WriteText(Path.Combine(context.Folder, CandidatesFile), string.Join("\n", lines) + "\n");

        var selection = GorsSelection.Select(candidates, guard,
            new GorsOptions { CapPerCategory = settings.GorsCapPerCategory, MaxPerPrompt = settings.GorsImagesPerPrompt });
        var summary = new Dictionary<string, double>
        {
            ["prompts"] = prompts.Count, ["images_per_prompt"] = seeds.Count, ["candidates"] = selection.Candidates, ["kept"] = selection.Kept.Count,
            ["seed_base"] = settings.GorsSeedBase, ["sampling_steps"] = settings.SamplingSteps, ["guidance"] = settings.Guidance,
            ["reused_prompts"] = prompts.Count - toGenerate,
        };
        foreach (var c in selection.Categories)
        {
            string w = Metrics.Word(c.Category);
            summary[$"{w}.candidates"] = c.Candidates;
            summary[$"{w}.passed"] = c.Passed;
            summary[$"{w}.pass_rate"] = c.PassRate;
            summary[$"{w}.kept"] = c.Kept;
            summary[$"{w}.kept_prompts"] = c.KeptPrompts;
        }

        if (selection.Kept.Count == 0)
            throw new InvalidOperationException($"gors-data: none of the {selection.Candidates} base images passed its category check; nothing to fine-tune on (see {Path.Combine(context.Folder, CandidatesFile)})");

        string dataset = Path.Combine(context.Folder, DatasetFolder);
        if (Directory.Exists(dataset)) Directory.Delete(dataset, recursive: true);
        GorsDatasetWriter.Write(selection, dataset);
        context.Say($"gors-data: kept {selection.Kept.Count} of {selection.Candidates} images -> {dataset}");
        var notes = selection.Categories.Where(c => c.Kept == 0).Select(c => $"no {Metrics.Word(c.Category)} image passed: the GORS dataset has none of that category").ToList();
        return new StudyStageResult([CandidatesFolder, CandidatesFile, DatasetFolder], summary, notes);
    }

    /// <summary>A prompt's images from a previous run when every one is there and decodes; else null.</summary>
    private static IReadOnlyList<(long Seed, string File, RgbaImage Image)>? Reusable(string folder, GorsPrompt prompt, IReadOnlyList<long> seeds)
    {
        var list = new List<(long, string, RgbaImage)>();
        foreach (long seed in seeds)
        {
            string file = Path.Combine(folder, ImageFileName(prompt, seed));
            if (!File.Exists(file)) return null;
            try
            {
                list.Add((seed, file, RgbaImage.Decode(File.ReadAllBytes(file), file)));
            }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                return null;
            }
        }

        return list;
    }

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        string G(string key, string format = "0") => WorldStudyStage.Get(done, key, format);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"GORS data: the base generated {G("images_per_prompt")} image(s) for each of {G("prompts")} training-split prompts ({G("sampling_steps")} sampler steps, guidance {G("guidance", "0.##")}, seeds from {G("seed_base")}, disjoint from the evaluation seeds); the evaluator's category check kept {G("kept")} of {G("candidates")} (`{DatasetFolder}/`, selection in `{DatasetFolder}/{GorsDatasetWriter.SelectionFileName}`).");
        md.AppendLine();
        md.AppendLine("| category | candidates | passed | pass rate | kept | kept prompts |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            string w = Metrics.Word(category);
            string rate = done.Summary.TryGetValue($"{w}.pass_rate", out double r) && double.IsFinite(r) ? Metrics.Pct(r) : "–";
            md.AppendLine(CultureInfo.InvariantCulture, $"| {w} | {G($"{w}.candidates")} | {G($"{w}.passed")} | {rate} | {G($"{w}.kept")} | {G($"{w}.kept_prompts")} |");
        }

        return md.ToString();
    }
}

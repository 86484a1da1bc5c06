using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Core.Threading;
using CTCal.Hosting;
using CTCal.Synthetic;
using NLog;

namespace CTCal.MainJob.Study;

/// <summary>
/// One model a study stage evaluates: the base itself (<see cref="Job"/> null) or a fine-tune of it.
/// </summary>
/// <param name="Id">Model id (folder and file names; lowercase letters, digits and '-').</param>
/// <param name="Condition">What the model stands for in the tables (<c>base</c>, <c>gors</c>, <c>gors+ctcal</c>, an ablation).</param>
/// <param name="Seed">Fine-tune seed (0 for the base); models of two conditions with the same seed are paired.</param>
/// <param name="Job">The trainer job without its model, data and output paths (the stage sets them); null for the base.</param>
public sealed record StudyModel(string Id, string Condition, long Seed, FineTuneJob? Job);

/// <summary>One scored evaluation image.</summary>
/// <param name="Prompt">Index into the stage's prompt list.</param>
/// <param name="Primary">The prompt category's own check (1 pass, 0 fail).</param>
/// <param name="Overall">Mean of every applicable check.</param>
/// <param name="File">The PNG, relative to the stage folder.</param>
public sealed record StudyImage(int Prompt, long Seed, string Category, bool HeldOut, double Primary, double Overall, string File);

/// <summary>
/// What a fine-tune's step events said: wall time, trainer runs, the last loss, and the study measures over the run (the
/// median ratio of the CTCal to the diffusion gradient norm on the trainable weights, the KL of the student maps to the
/// model teacher's at the first and last measured step, the last map entropy; null when not measured).
/// </summary>
public sealed record FineTuneMeasures(double Seconds, int Attempts, double? FinalLoss, double? MedianGradRatio, double? AlignKlFirst, double? AlignKlLast, double? AlignEntropyLast);

/// <summary>A model's evaluation: its images and, for a fine-tune, its measures.</summary>
public sealed record StudyModelResult(StudyModel Model, IReadOnlyList<StudyImage> Images, FineTuneMeasures? Measures);

/// <summary>The evaluation images every model of a stage gets: the prompts, image seeds base + 0..n-1, the sampler.</summary>
public sealed record StudyEvaluation(IReadOnlyList<EvalPrompt> Prompts, long ImageSeedBase, int ImageSeeds, int SamplingSteps, double Guidance, int Resolution, string Scheduler);

/// <summary>
/// The engine of the study's fine-tune stages: fine-tunes each <see cref="StudyModel"/> through the plugin's
/// <see cref="IFineTuner"/> (the trainer as a child process, the LoRA merged and exported to ONNX), generates its
/// evaluation images through the plugin's <see cref="IImageGenerator"/> and scores them with the <see cref="Evaluator"/>.
/// Each model's result is written to <c>results/&lt;id&gt;.json</c> when it is complete; a rerun reuses a result whose
/// job and evaluation are the ones asked for, so a killed stage resumes model by model (a fine-tune cut off midway runs
/// again from its start, with the same seed and so the same weights).
/// </summary>
public static class StudyModels
{
    /// <summary>Folders of a stage using the engine.</summary>
    public const string ResultsFolder = "results", RunsFolder = "runs", ImagesFolder = "images", HostFolder = "host";

    private static readonly Logger Log = LogManager.GetLogger("ctcal-main.study");

    private sealed record Stored(string Job, string Evaluation, StudyModelResult Result);

    /// <summary>
    /// Fine-tunes (on <paramref name="data"/>, from <paramref name="baseModel"/>) and evaluates <paramref name="models"/>
    /// in <paramref name="folder"/>, <see cref="StudySettings.Parallel"/> at a time; returns their results in order.
    /// </summary>
    public static async Task<IReadOnlyList<StudyModelResult>> RunAsync(
        string folder, StudySettings settings, string baseModel, string data, IReadOnlyList<StudyModel> models, StudyEvaluation evaluation,
        Action<string> say, CancellationToken ct)
    {
        if (models.Select(m => m.Id).Distinct().Count() != models.Count)
            throw new ArgumentException("study models: an id is used twice", nameof(models));
        string evaluationKey = EvaluationKey(evaluation);
        var results = new StudyModelResult?[models.Count];
        for (int i = 0; i < models.Count; i++) results[i] = Reusable(folder, models[i], evaluationKey);
        var todo = Enumerable.Range(0, models.Count).Where(i => results[i] is null).ToList();
        say($"{Path.GetFileName(folder)}: {models.Count} models, {models.Count - todo.Count} already evaluated, {todo.Count} to run");
        if (todo.Count == 0) return results!;

        PrepareTrainer();
        using var host = HostWorkspace.Open(Path.Combine(folder, HostFolder), BuildInfo.PluginFolder(), settings.Threads,
            new NLogSink("ctcal-main.host"), id => new NLogSink($"plugin.{id}"));
        if (todo.Any(i => models[i].Job is null))
            await host.Exporter.ExportAsync(new ModelExportRequest(baseModel, BaseId(models), Overwrite: true), null, ct);

        var evaluator = new Evaluator();
        int finished = 0;
        await BoundedParallel.RunAsync(todo, settings.Parallel, async (i, token) =>
        {
            var model = models[i];
            FineTuneMeasures? measures = null;
            if (model.Job is not null)
                measures = await FineTuneAsync(host.FineTuner, folder, baseModel, data, settings.Threads, model, token);
            var images = await GenerateAsync(host.Generator, folder, model.Job is null ? BaseId(models) : model.Id, model.Id, evaluation, evaluator, token);
            var result = new StudyModelResult(model, images, measures);
            Directory.CreateDirectory(Path.Combine(folder, ResultsFolder));
            AtomicFile.WriteText(ResultFile(folder, model.Id), JsonSerializer.Serialize(new Stored(JobKey(model), evaluationKey, result), RunResults.Json));
            results[i] = result;
            int k = Interlocked.Increment(ref finished);
            say(string.Create(CultureInfo.InvariantCulture,
                $"{Path.GetFileName(folder)}: {model.Id} done ({k}/{todo.Count}): primary {Metrics.Pct(images.Average(x => x.Primary))}, overall {Metrics.Pct(images.Average(x => x.Overall))}{(measures is null ? "" : $", {measures.Seconds:0} s")}"));
            return i;
        }, ct);

        return results!;
    }

    /// <summary>The result file of model <paramref name="id"/>.</summary>
    public static string ResultFile(string folder, string id) => Path.Combine(folder, ResultsFolder, id + ".json");

    /// <summary>Reads the stored results of <paramref name="ids"/> in a done stage's folder.</summary>
    /// <exception cref="InvalidDataException">A result is missing or unreadable (the message names the file).</exception>
    public static IReadOnlyList<StudyModelResult> Read(string folder, IEnumerable<string> ids) => ids.Select(id =>
    {
        string file = ResultFile(folder, id);
        try
        {
            return JsonSerializer.Deserialize<Stored>(File.ReadAllBytes(file), RunResults.Json)?.Result
                   ?? throw new InvalidDataException($"{file}: empty");
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            throw new InvalidDataException($"{file}: cannot read the study result ({e.Message})", e);
        }
    }).ToList();

    /// <summary>Every stored result in a stage's folder.</summary>
    public static IReadOnlyList<StudyModelResult> ReadAll(string folder)
    {
        string results = Path.Combine(folder, ResultsFolder);
        if (!Directory.Exists(results)) return [];
        return Read(folder, Directory.GetFiles(results, "*.json").Select(f => Path.GetFileNameWithoutExtension(f)!).Order(StringComparer.Ordinal));
    }

    /// <summary>The trainer on PATH for the plugin and the trainer children's GC budget (as the main job sets them).</summary>
    private static void PrepareTrainer()
    {
        HostWorkspace.PrependToPath(Path.GetDirectoryName(BuildInfo.TrainerExecutable())!);
        if (Environment.GetEnvironmentVariable(MainJobRunner.TrainerGen0SizeVariable) is null)
            Environment.SetEnvironmentVariable(MainJobRunner.TrainerGen0SizeVariable, MainJobRunner.TrainerGen0Size);
    }

    private static string BaseId(IReadOnlyList<StudyModel> models) => models.FirstOrDefault(m => m.Job is null)?.Id ?? "base";

    private static string JobKey(StudyModel model) => model.Job is null ? "base" : FineTuneJobJson.ToJson(model.Job);

    private static string EvaluationKey(StudyEvaluation e) => JsonSerializer.Serialize(new
    {
        prompts = e.Prompts.Select(p => p.Prompt), e.ImageSeedBase, e.ImageSeeds, e.SamplingSteps, e.Guidance, e.Resolution,
    }, RunResults.Json);

    private static StudyModelResult? Reusable(string folder, StudyModel model, string evaluationKey)
    {
        string file = ResultFile(folder, model.Id);
        if (!File.Exists(file)) return null;
        try
        {
            var stored = JsonSerializer.Deserialize<Stored>(File.ReadAllBytes(file), RunResults.Json);
            return stored is not null && stored.Job == JobKey(model) && stored.Evaluation == evaluationKey ? stored.Result with { Model = model } : null;
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            Log.Warn("{0}: unreadable ({1}); the model runs again", file, e.Message);
            return null;
        }
    }

    private static async Task<FineTuneMeasures> FineTuneAsync(
        IFineTuner tuner, string folder, string baseModel, string data, int threads, StudyModel model, CancellationToken ct)
    {
        string output = Path.Combine(folder, RunsFolder, model.Id);
        return await FineTuneStage.WithAttemptsAsync(model.Id, output, async attempt =>
        {
            var steps = new List<IReadOnlyDictionary<string, double>>();
            var progress = new SynchronousProgress<OperationProgress>(p =>
            {
                if (p.Stage == "step" && p.Metrics is { } m)
                {
                    lock (steps) steps.Add(m);
                }
            });
            var job = model.Job! with { Model = baseModel, Data = data, Out = output, Threads = threads };
            var clock = Stopwatch.StartNew();
            await tuner.FineTuneAsync(new FineTuneRequest(model.Id, job), progress, ct);
            lock (steps) return Measures(steps, clock.Elapsed.TotalSeconds, attempt);
        }, ct);
    }

    /// <summary>The measures of one run from its step events' metrics.</summary>
    public static FineTuneMeasures Measures(IReadOnlyList<IReadOnlyDictionary<string, double>> steps, double seconds, int attempts)
    {
        double? Value(IReadOnlyDictionary<string, double> m, string key) => m.TryGetValue(key, out double v) && double.IsFinite(v) ? v : null;
        var ratios = steps.Select(m => (D: Value(m, "grad_diffusion"), C: Value(m, "grad_ctcal")))
            .Where(x => x.D > 0 && x.C is not null).Select(x => (double?)(x.C!.Value / x.D!.Value));
        var kl = steps.Select(m => Value(m, "align_kl")).Where(v => v is not null).ToList();
        var entropy = steps.Select(m => Value(m, "align_entropy")).LastOrDefault(v => v is not null);
        return new FineTuneMeasures(seconds, attempts, steps.Select(m => Value(m, "loss")).LastOrDefault(v => v is not null), StudyTables.Median(ratios),
            kl.FirstOrDefault(), kl.LastOrDefault(), entropy);
    }

    internal static async Task<IReadOnlyList<StudyImage>> GenerateAsync(
        IImageGenerator generator, string folder, string onnxModel, string id, StudyEvaluation evaluation, Evaluator evaluator, CancellationToken ct)
    {
        string images = Path.Combine(folder, ImagesFolder, id);
        Directory.CreateDirectory(images);
        var list = new List<StudyImage>();
        for (int p = 0; p < evaluation.Prompts.Count; p++)
        {
            var prompt = evaluation.Prompts[p];
            var request = new GenerationRequest
            {
                Model = onnxModel,
                Prompt = prompt.Prompt,
                Width = evaluation.Resolution,
                Height = evaluation.Resolution,
                Steps = evaluation.SamplingSteps,
                GuidanceScale = evaluation.Guidance,
                Seed = evaluation.ImageSeedBase,
                BatchCount = evaluation.ImageSeeds,
                Scheduler = evaluation.Scheduler,
            };
            int index = p;
            foreach (var (seed, file, image) in await GenerateAndScoreStage.GenerateToFilesAsync(generator, request,
                         s => Path.Combine(images, GenerateAndScoreStage.ImageFileName(index, s)), ct))
            {
                var score = evaluator.Score(image, prompt.Spec);
                list.Add(new StudyImage(p, seed, Metrics.Word(prompt.Category), prompt.HeldOutPair, score.Primary(prompt.Category), score.Overall,
                    Path.GetRelativePath(folder, file)));
            }
        }

        generator.UnloadModel(onnxModel);
        return list;
    }
}

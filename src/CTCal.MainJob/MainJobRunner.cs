using System.Diagnostics;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Hosting;
using CTCal.Synthetic;
using NLog;
using Spectre.Console;

namespace CTCal.MainJob;

/// <summary>
/// Chains the stages: dataset, base model, host workspace + base export, fine-tunes, generation + scoring, report.
/// Progress goes to an <see cref="IAnsiConsole"/>, details to NLog.
/// </summary>
public sealed class MainJobRunner
{
    private static readonly Logger Log = LogManager.GetLogger("ctcal-main");

    /// <summary>The .NET runtime's gen-0 budget knob, set for the trainer processes (hex bytes: 256 MB).</summary>
    internal const string TrainerGen0SizeVariable = "DOTNET_GCgen0size";
    internal const string TrainerGen0Size = "0x10000000";

    private readonly IAnsiConsole _console;
    private readonly List<StageTime> _stages = new();

    public MainJobRunner(IAnsiConsole console)
    {
        _console = console;
    }

    /// <summary>What the shared stages prepared: the data, the prompts, the base, the loaded host.</summary>
    internal sealed record Prepared(string Data, IReadOnlyList<EvalPrompt> AllPrompts, IReadOnlyList<(int Index, EvalPrompt Prompt)> Prompts,
        string BaseModel, BaseRecipeInfo BaseRecipe, SyntheticWorldOptions World, HostWorkspace Host) : IDisposable
    {
        public void Dispose() => Host.Dispose();
    }

    /// <summary>Runs the whole main job and writes its reports. Returns the results.</summary>
    public async Task<RunResults> RunAsync(MainJobOptions options, CancellationToken ct)
    {
        options.Validate();
        using var log = RunLog.To(options.OutputFolder);
        var started = DateTime.UtcNow;
        var total = Stopwatch.StartNew();
        var machine = MachineInfo.Current();
        Directory.CreateDirectory(options.OutputFolder);
        var recipe = options.Recipe;
        var jobs = FineTuneStage.MainJobs(recipe);

        using var prepared = await PrepareAsync(options, ct);
        PrintEstimate(options, jobs.Count, prepared.Prompts.Count, jobs.Count + 1);

        var fineTunes = await FineTuneAsync(options, prepared, jobs, ct);
        var modelIds = new List<string> { "base" };
        modelIds.AddRange(jobs.Select(j => j.ModelId));
        var scores = await GenerateAsync(options, prepared, modelIds, ct);

        var summaries = new List<MethodSummary>
        {
            MethodSummary.Of("base", scores.Where(s => s.Model == "base").ToList()),
            MethodSummary.Of(FineTuneStage.Vanilla, scores.Where(s => jobs.Any(j => j.ModelId == s.Model && j.Method == FineTuneStage.Vanilla)).ToList()),
            MethodSummary.Of(FineTuneStage.Ctcal, scores.Where(s => jobs.Any(j => j.ModelId == s.Model && j.Method == FineTuneStage.Ctcal)).ToList()),
        };
        var verdicts = new[] { "all.overall", "all.binding", "all.counting", "all.spatial", "heldout.overall" }
            .Select(m => Verdict.Of(summaries[2], summaries[1], m)).ToList();

        var results = new RunResults(
            options.Quick ? "quick (smoke run)" : options.Label, options.Quick, started, recipe,
            new RunConfiguration(prepared.BaseModel, options.FromScratch, prepared.World.Seed, prepared.World.TrainCount, options.Threads, options.Parallel,
                options.TrainerOverrides.Select(o => o.ToString()).ToList(),
                jobs.ToDictionary(j => j.ModelId, j => FineTuneStage.TrainerJob(j, recipe, options.Threads, options.TrainerOverrides, prepared.BaseModel, prepared.Data,
                    FineTuneStage.OutputOf(Path.Combine(options.OutputFolder, "runs"), j)))),
            machine, _stages.ToList(), total.Elapsed.TotalSeconds,
            prepared.Prompts.Select(p => new PromptInfo(p.Index, p.Prompt.Prompt, Metrics.Word(p.Prompt.Category), p.Prompt.HeldOutPair)).ToList(),
            summaries, verdicts, scores, fineTunes);

        var reportClock = Stopwatch.StartNew();
        if (options.WriteReport)
        {
            ReportWriter.WriteAll(results, options.OutputFolder);
        }

        _stages.Add(new StageTime("report", reportClock.Elapsed.TotalSeconds));
        results = results with { Stages = _stages.ToList(), TotalSeconds = total.Elapsed.TotalSeconds };
        if (options.WriteReport)
        {
            AtomicFile.WriteText(Path.Combine(options.OutputFolder, "results.json"), results.ToJson());
            ReportWriter.WriteAll(results, options.OutputFolder);
        }

        PrintResults(results, options);
        return results;
    }

    /// <summary>Stages a-c and the base export, shared by the main run and the sweep.</summary>
    internal async Task<Prepared> PrepareAsync(MainJobOptions options, CancellationToken ct)
    {
        Directory.CreateDirectory(options.OutputFolder);
        string trainer = BuildInfo.TrainerExecutable();
        HostWorkspace.PrependToPath(Path.GetDirectoryName(trainer)!);
        // Trainer children inherit this: a large gen-0 budget makes their garbage collections rare, and with them the
        // finalizer race on implicitly converted TorchSharp Scalars (see FineTuneStage.MaxAttempts).
        if (Environment.GetEnvironmentVariable(TrainerGen0SizeVariable) is null)
        {
            Environment.SetEnvironmentVariable(TrainerGen0SizeVariable, TrainerGen0Size);
        }
        string baseModel = Path.GetFullPath(options.BaseModel ?? BuildInfo.DefaultBaseModel());

        // b (validation first, so a missing base fails before minutes of work).
        BaseRecipeInfo baseRecipe;
        if (options.FromScratch)
        {
            baseRecipe = File.Exists(Path.Combine(baseModel, BaseRecipeInfo.FileName)) ? BaseRecipeInfo.Read(baseModel) : BaseRecipeInfo.Default;
        }
        else
        {
            BaseModelStage.Validate(baseModel);
            baseRecipe = BaseRecipeInfo.Read(baseModel);
        }

        // a
        var world = DatasetStage.WorldFor(baseRecipe, options.Recipe);
        string data = Path.Combine(options.OutputFolder, "data");
        await Stage("dataset", async () =>
        {
            bool reused = false;
            await _console.Status().StartAsync($"dataset: {world.TrainCount} images, world seed {world.Seed}", _ =>
            {
                reused = DatasetStage.Ensure(data, world, ct);
                return Task.CompletedTask;
            });
            Say($"dataset: {(reused ? "reused" : "wrote")} {data} ({world.TrainCount} images, world seed {world.Seed}, {world.ImageSize} px)");
        });
        var allPrompts = DatasetWriter.ReadEvalPrompts(Path.Combine(data, DatasetStage.EvalPromptsFileName));
        var prompts = DatasetStage.Select(allPrompts, options.Recipe.PromptsPerCategory);

        if (options.FromScratch)
        {
            string scratch = Path.Combine(options.OutputFolder, "base");
            await Stage("base (from scratch)", () => _console.Status().StartAsync("base model from scratch", async ctx =>
            {
                await BaseModelStage.TrainFromScratchAsync(trainer, data, scratch, baseRecipe, options.Threads, (part, line) =>
                {
                    Log.Debug("base {0}: {1}", part, line);
                    ctx.Status($"base {part}: {Markup.Escape(line.Length > 100 ? line[..100] : line)}");
                }, ct);
            }));
            baseModel = scratch;
            Say($"base: trained from scratch into {scratch}");
        }
        else
        {
            Say($"base: {baseModel}");
        }

        // c
        HostWorkspace? host = null;
        await Stage("host + base export", async () =>
        {
            host = HostWorkspace.Open(Path.Combine(options.OutputFolder, "host"), BuildInfo.PluginFolder(), options.Threads,
                new NLogSink("ctcal-main.host"), id => new NLogSink($"plugin.{id}"));
            await _console.Status().StartAsync("exporting the base model to ONNX through the plugin", async _ =>
                await host.Exporter.ExportAsync(new ModelExportRequest(baseModel, "base", Overwrite: true), null, ct));
            Say($"host: {host.Folder} (plugin loaded, base exported as model 'base')");
        });
        return new Prepared(data, allPrompts, prompts, baseModel, baseRecipe, world, host!);
    }

    internal async Task<IReadOnlyList<FineTuneOutcome>> FineTuneAsync(MainJobOptions options, Prepared prepared, IReadOnlyList<FineTuneSpec> jobs, CancellationToken ct)
    {
        IReadOnlyList<FineTuneOutcome> outcomes = Array.Empty<FineTuneOutcome>();
        await Stage("fine-tune", () => Progress().StartAsync(async ctx =>
        {
            var tasks = jobs.ToDictionary(j => j.ModelId, j => ctx.AddTask(Markup.Escape(j.ModelId), autoStart: false, maxValue: options.Recipe.Steps));
            outcomes = await FineTuneStage.RunAsync(prepared.Host.FineTuner, prepared.BaseModel, prepared.Data, Path.Combine(options.OutputFolder, "runs"), jobs,
                options.Recipe, options.Threads, options.Parallel, options.TrainerOverrides, (job, p) =>
                {
                    var task = tasks[job.ModelId];
                    if (!task.IsStarted)
                    {
                        task.StartTask();
                    }

                    if (p.Stage == "step")
                    {
                        task.Value = p.Current;
                        if (!_console.Profile.Capabilities.Interactive && p.Total > 0 && (p.Current % Math.Max(1, p.Total / 10) == 0 || p.Current == p.Total))
                        {
                            string lossText = p.Metrics?.TryGetValue("loss", out double l) == true ? l.ToString(" 'loss' 0.0000", CultureInfo.InvariantCulture) : "";
                            _console.MarkupLine(Markup.Escape($"{job.ModelId}: step {p.Current}/{p.Total}{lossText}"));
                        }

                        if (p.Metrics?.TryGetValue("loss", out double loss) == true)
                        {
                            task.Description = Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"{job.ModelId} loss {loss:0.0000}"));
                        }
                    }
                    else if (p.Stage == "export")
                    {
                        task.Description = Markup.Escape($"{job.ModelId} exporting");
                    }
                }, ct);
            foreach (var task in tasks.Values)
            {
                task.Value = task.MaxValue;
                task.StopTask();
            }
        }));
        foreach (var o in outcomes)
        {
            Log.Info("fine-tune {0}: {1} steps in {2:0.0} s", o.Spec.ModelId, o.Loss.Count, o.Seconds);
        }

        return outcomes;
    }

    internal async Task<IReadOnlyList<ModelScores>> GenerateAsync(MainJobOptions options, Prepared prepared, IReadOnlyList<string> models, CancellationToken ct)
    {
        var evaluator = new Evaluator();
        var scores = new List<ModelScores>();
        await Stage("generate + score", () => Progress().StartAsync(async ctx =>
        {
            int perModel = prepared.Prompts.Count * options.Recipe.ImageSeeds;
            foreach (string model in models)
            {
                var task = ctx.AddTask(Markup.Escape($"images {model}"), maxValue: perModel);
                var scored = await GenerateAndScoreStage.GenerateAndScoreAsync(prepared.Host.Generator, model, prepared.Prompts, options.Recipe,
                    Path.Combine(options.OutputFolder, "images"), options.Parallel, evaluator, () => task.Increment(1), ct);
                scores.Add(scored);
                task.StopTask();
                Say($"{model}: {scored.Images.Count} images, overall {Metrics.Pct(scored.Metrics.GetValueOrDefault("all.overall", double.NaN))}");
            }
        }));
        return scores;
    }

    private Progress Progress() => _console.Progress().AutoClear(false).HideCompleted(false)
        .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn());

    private async Task Stage(string name, Func<Task> body)
    {
        Log.Info("stage {0}: start", name);
        var clock = Stopwatch.StartNew();
        await body();
        _stages.Add(new StageTime(name, clock.Elapsed.TotalSeconds));
        Log.Info("stage {0}: {1:0.0} s", name, clock.Elapsed.TotalSeconds);
        _console.MarkupLine($"[grey]{Markup.Escape(name)}: {clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s[/]");
    }

    private void Say(string line)
    {
        Log.Info(line);
        _console.MarkupLine(Markup.Escape(line));
    }

    /// <summary>
    /// Rough wall time of the fine-tune and generation stages on 2 idle cores, from speeds measured on a loaded 2-core
    /// machine and halved: per step of batch 16 at 64 px with one torch thread, vanilla 0.25 s and CTCal 0.45 s; about
    /// 20 s per fine-tune for the trainer's start and the export; about 0.5 s of one core per image at 25 DDIM steps.
    /// </summary>
    public static double EstimateSeconds(MainJobRecipe recipe, int parallel, int promptCount, int models)
    {
        double lanes = Math.Min(parallel, Math.Max(1, Environment.ProcessorCount));
        double batch = recipe.BatchSize / 16.0;
        double train = recipe.Seeds.Count * ((recipe.Steps * batch * (0.25 + 0.45)) + (2 * 20)) / lanes;
        double images = models * promptCount * recipe.ImageSeeds * 0.5 * recipe.SamplingSteps / 25.0 / lanes;
        return train + images;
    }

    private void PrintEstimate(MainJobOptions options, int fineTunes, int prompts, int models)
    {
        double s = EstimateSeconds(options.Recipe, options.Parallel, prompts, models);
        Say(string.Create(CultureInfo.InvariantCulture,
            $"plan: {fineTunes} fine-tunes x {options.Recipe.Steps} steps, {models} models x {prompts} prompts x {options.Recipe.ImageSeeds} image seeds; estimate about {s / 60:0.0} min on 2 idle cores"));
    }

    private void PrintResults(RunResults results, MainJobOptions options)
    {
        var table = new Table().Title(results.Quick ? "CTCal vs vanilla — SMOKE RUN" : "CTCal vs vanilla");
        table.AddColumn("model");
        table.AddColumn("seeds");
        var columns = new[] { ("overall", "all.overall"), ("binding", "all.binding"), ("counting", "all.counting"), ("spatial", "all.spatial"), ("seen", "seen.overall"), ("held-out", "heldout.overall") };
        foreach (var (label, _) in columns)
        {
            table.AddColumn(new TableColumn(label).RightAligned());
        }

        foreach (var m in results.Summaries)
        {
            var cells = new List<string> { m.Method, m.Models.Count.ToString(CultureInfo.InvariantCulture) };
            cells.AddRange(columns.Select(c => m.Metrics.TryGetValue(c.Item2, out var s)
                ? s.N > 1 ? $"{Metrics.Pct(s.Mean)} ± {Metrics.Points(s.Std)}" : Metrics.Pct(s.Mean) : "–"));
            table.AddRow(cells.Select(Markup.Escape).ToArray());
        }

        _console.Write(table);
        foreach (var v in results.Verdicts)
        {
            _console.MarkupLine(Markup.Escape(v.Text));
        }

        string report = options.WriteReport ? $"; report: {Path.Combine(options.OutputFolder, "report.html")} (and report.md, results.json)" : "";
        _console.MarkupLine(Markup.Escape(results.TotalSeconds.ToString("0", CultureInfo.InvariantCulture) + " s in total" + report));
    }
}

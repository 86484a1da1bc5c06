using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Hosting;
using CTCal.MainJob.Study;
using NLog;
using Spectre.Console;

namespace CTCal.MainJob;

/// <summary>Exit codes of <c>ctcal-main</c>.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int BadUsage = 2;
    public const int Cancelled = 130;
}

/// <summary>
/// The command line: <c>ctcal-main [--quick] [--out]</c> runs the main comparison (<see cref="StudyStages.Comparison"/>);
/// <c>ctcal-main study</c> runs every stage of the study (<see cref="StudyRunner"/>); <c>ctcal-main renders [options]
/// [-- trainer arguments]</c> runs the earlier job (vanilla vs CTCal on the ground-truth renders, <see cref="MainJobRunner"/>)
/// and <c>ctcal-main sweep</c> its learning-rate x CTCal-weight grid; <c>ctcal-main precision</c> scores exported folders
/// of one base (fp32 vs fp16, <see cref="PrecisionComparison"/>). Every recipe option overrides one value of <see cref="MainJobRecipe"/> (or of
/// <see cref="MainJobRecipe.Quick"/> with <c>--quick</c>).
/// </summary>
public static class MainJobCli
{
    private sealed class CommonOptions
    {
        public readonly Option<bool> Quick = new("--quick") { Description = "smoke run: few steps, 2 seeds, 4 prompts per category (minutes); the report says so" };
        public readonly Option<string?> Out = new("--out") { Description = "output folder (default runs/main, runs/quick with --quick, runs/sweep for sweep)" };
        public readonly Option<int?> Steps = new("--steps") { Description = "fine-tune steps (both methods)" };
        public readonly Option<int?> BatchSize = new("--batch-size") { Description = "images per step" };
        public readonly Option<int?> Warmup = new("--warmup") { Description = "warmup steps" };
        public readonly Option<int?> ImageSeeds = new("--image-seeds") { Description = "images per prompt and model" };
        public readonly Option<int?> Prompts = new("--prompts") { Description = "evaluation prompts per category (default: all)" };
        public readonly Option<int?> SamplingSteps = new("--sampling-steps") { Description = "DDIM steps of the evaluation images" };
        public readonly Option<double?> Guidance = new("--guidance") { Description = "guidance scale of the evaluation images" };
        public readonly Option<string?> Base = new("--base") { Description = "base model folder (default: assets/base-model)" };
        public readonly Option<bool> FromScratch = new("--from-scratch") { Description = "train the base model first (ctcal-train base vae + base unet with its recipe)" };
        public readonly Option<int> Threads = new("--threads") { Description = "torch threads per trainer, ONNX Runtime threads per session", DefaultValueFactory = _ => 1 };
        public readonly Option<int?> Parallel = new("--parallel") { Description = "fine-tunes / generations at a time (default: 2, or 1 on a single core)" };
        public readonly Option<int?> TeacherT = new("--teacher-t") { Description = "CTCal teacher timestep (passed to the trainer)" };
        public readonly Option<string[]> Layers = new("--layers") { Description = "CTCal layers (passed to the trainer)", AllowMultipleArgumentsPerToken = true };
        public readonly Option<bool> Full = new("--full") { Description = "full fine-tuning instead of LoRA (passed to the trainer)" };
        public readonly Option<int?> LoraRank = new("--lora-rank") { Description = "LoRA rank (passed to the trainer)" };
        public readonly Option<string?> Distance = new("--distance") { Description = "CTCal distance mse, l1 or kl (passed to the trainer)" };
        public readonly Option<double?> ReconstructionWeight = new("--reconstruction-weight") { Description = "CTCal lambda3 (passed to the trainer)" };
        public readonly Option<double?> BalanceWeight = new("--balance-weight") { Description = "CTCal lambda4 (passed to the trainer)" };
        public readonly Option<double?> Tau = new("--tau") { Description = "CTCal balancing margin (passed to the trainer)" };
        public readonly Argument<string[]> Extra = new("trainer-args") { Description = "further trainer arguments (after --)", Arity = ArgumentArity.ZeroOrMore };

        public IEnumerable<Option> All() => GetType().GetFields().Select(f => f.GetValue(this)).OfType<Option>();

        /// <summary>Adds these options, then the verb's own <paramref name="options"/>, then the trainer-arguments argument.</summary>
        public void AddTo(Command command, params Option[] options)
        {
            foreach (var o in All().Concat(options))
            {
                command.Options.Add(o);
            }

            command.Arguments.Add(Extra);
        }
    }

    /// <summary>Parses a <c>renders</c> command line (without the verb) into options without running anything (bad values throw <see cref="ArgumentException"/>).</summary>
    public static MainJobOptions ParseOptions(params string[] args)
    {
        MainJobOptions? parsed = null;
        var messages = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(messages), Ansi = AnsiSupport.No });
        console.Profile.Width = 4000; // one message per line
        var root = Build(console, options => parsed = options);
        var parse = root.Parse(["renders", .. args]);
        if (parse.Errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", parse.Errors.Select(e => e.Message)));
        }

        if (parse.CommandResult.Command.Name != "renders")
        {
            throw new ArgumentException("not a renders command line");
        }

        int code = parse.Invoke();
        return code == ExitCodes.Ok && parsed is not null ? parsed : throw new ArgumentException(messages.ToString().Replace("error: ", "", StringComparison.Ordinal).Trim());
    }

    /// <summary>Builds the command line. <paramref name="parseOnly"/>, when given, receives the renders run's options instead of running it.</summary>
    public static RootCommand Build(IAnsiConsole console, Action<MainJobOptions>? parseOnly = null)
    {
        var common = new CommonOptions();
        var lr = new Option<double?>("--lr") { Description = "learning rate (both methods)" };
        var seeds = new Option<string?>("--seeds") { Description = "fine-tune seeds, comma-separated, or a count N (seeds 1..N)" };
        var weight = new Option<double?>("--ctcal-weight") { Description = "scale of the CTCal pixel, semantic and balance weights (1: the trainer's 1, 0.5 and 0.1; default 0.01)" };
        var root = new RootCommand(
            "ctcal-main: the main job. The main comparison of the CTCal study: the tiny base, GORS (fine-tuned on its own reward-selected generations) and GORS + CTCal, paired seeds, test prompts, bootstrap intervals.");
        AddStudyAction(root, console, comparison: true);
        var renders = new Command("renders", "CTCal vs vanilla fine-tuning on the world's ground-truth renders (the main job before the study), measured end to end.");
        root.Subcommands.Add(renders);
        common.AddTo(renders, lr, seeds, weight);
        renders.SetAction((parse, ct) => Guarded(console, async () =>
        {
            var options = ToOptions(parse, common, parse.GetValue(lr), parse.GetValue(seeds), parse.GetValue(weight), "renders");
            if (parseOnly is not null)
            {
                parseOnly(options);
                return;
            }

            RunLog.SetCommandFolder(options.OutputFolder);
            await new MainJobRunner(console).RunAsync(options, ct);
        }));

        var sweepCommon = new CommonOptions();
        var lrs = new Option<string>("--lr") { Description = "learning rates, comma-separated (both methods)", DefaultValueFactory = _ => "3e-4,1e-3" };
        var weights = new Option<string>("--ctcal-weight") { Description = "CTCal weights, comma-separated", DefaultValueFactory = _ => "0.01,0.1,1" };
        var seed = new Option<long>("--seed") { Description = "the one fine-tune seed", DefaultValueFactory = _ => 1 };
        var sweep = new Command("sweep", "Grid over learning rates (both methods) and CTCal weights on one seed and a reduced prompt set; writes sweep.md and sweep.json");
        sweepCommon.AddTo(sweep, lrs, weights, seed);
        sweep.SetAction((parse, ct) => Guarded(console, async () =>
        {
            var options = ToOptions(parse, sweepCommon, null, parse.GetValue(seed).ToString(CultureInfo.InvariantCulture), null, "sweep");
            if (parse.GetValue(sweepCommon.Prompts) is null)
            {
                options = options with { Recipe = options.Recipe with { PromptsPerCategory = options.Recipe.PromptsPerCategory ?? 8 } };
            }

            RunLog.SetCommandFolder(options.OutputFolder);
            await Sweep.RunAsync(console, options, ParseList(parse.GetValue(lrs)!, "--lr"), ParseList(parse.GetValue(weights)!, "--ctcal-weight"), ct);
        }));
        root.Subcommands.Add(sweep);
        root.Subcommands.Add(StudyCommand(console));
        root.Subcommands.Add(StepCacheCommand(console));
        root.Subcommands.Add(PrecisionComparison.Create(body => Guarded(console, body), console));
        return root;
    }

    private static Command StepCacheCommand(IAnsiConsole console)
    {
        var @out = new Option<string?>("--out") { Description = "output folder (default runs/stepcache)" };
        var @base = new Option<string?>("--base") { Description = "base model folder (default: assets/base-model)" };
        var branches = new Option<string?>("--branches") { Description = "step-cache branches tried on the validation prompts, comma-separated (default: every up-block layer)" };
        var branch = new Option<int?>("--branch") { Description = "use this branch; no validation run" };
        var intervals = new Option<string>("--intervals") { Description = "intervals N measured on the test prompts, comma-separated, starting with 1", DefaultValueFactory = _ => "1,2,3" };
        var tolerance = new Option<double>("--tolerance") { Description = "largest validation overall drop (points) of the chosen branch at N = 2", DefaultValueFactory = _ => 1.0 };
        var validationSeeds = new Option<int>("--validation-seeds") { Description = "images per validation prompt", DefaultValueFactory = _ => 2 };
        var testSeeds = new Option<int>("--test-seeds") { Description = "images per test prompt", DefaultValueFactory = _ => 4 };
        var prompts = new Option<int?>("--prompts") { Description = "prompts per category of each split (default: all)" };
        var steps = new Option<int>("--sampling-steps") { Description = "DDIM steps", DefaultValueFactory = _ => 25 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime threads per session", DefaultValueFactory = _ => 1 };
        var command = new Command("stepcache", "Step caching (DeepCache) on the embedded world: branch chosen on validation prompts; FLOPs, seconds per image and scores on test prompts for each N; writes stepcache.md and stepcache.json")
        {
            @out, @base, branches, branch, intervals, tolerance, validationSeeds, testSeeds, prompts, steps, threads,
        };
        command.SetAction((parse, ct) => Guarded(console, async () =>
        {
            static List<int> Ints(string text, string option) => text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(x => int.TryParse(x, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : throw new ArgumentException($"{option}: '{x}' is not a whole number"))
                .ToList();
            var options = new StepCache.StepCacheBenchOptions
            {
                OutputFolder = Path.GetFullPath(parse.GetValue(@out) ?? Path.Combine("runs", "stepcache")),
                BaseModel = Path.GetFullPath(parse.GetValue(@base) ?? BuildInfo.DefaultBaseModel()),
                Branches = parse.GetValue(branches) is { } b ? Ints(b, "--branches") : null,
                Branch = parse.GetValue(branch),
                Intervals = Ints(parse.GetValue(intervals)!, "--intervals"),
                ValidationTolerance = parse.GetValue(tolerance),
                ValidationSeeds = parse.GetValue(validationSeeds),
                TestSeeds = parse.GetValue(testSeeds),
                PromptsPerCategory = parse.GetValue(prompts),
                SamplingSteps = parse.GetValue(steps),
                Threads = parse.GetValue(threads),
            };
            await StepCache.StepCacheBench.RunAsync(options, line => console.WriteLine(line), ct);
        }));
        return command;
    }

    private static Command StudyCommand(IAnsiConsole console)
    {
        var study = new Command("study", "The CTCal study, stage by stage into <out>/<nn>-<stage>/ (each finished by its done.json; a rerun skips done stages); writes study.md");
        AddStudyAction(study, console, comparison: false);
        return study;
    }

    /// <summary>
    /// The options and action of <c>study</c> (every stage) and of the root command (<paramref name="comparison"/>: the main
    /// comparison's stages, <see cref="StudyStages.Comparison"/>), which share the stage runner, folders and resume.
    /// </summary>
    private static void AddStudyAction(Command command, IAnsiConsole console, bool comparison)
    {
        var quick = new Option<bool>("--quick") { Description = "smoke settings (about a minute): 256 training images, 4 GORS prompts per category x 1 image, a few steps; the report says so" };
        string name = comparison ? "main" : "study";
        var output = new Option<string?>("--out") { Description = $"output folder (default runs/{name}, runs/{(comparison ? "quick" : "study-quick")} with --quick; with -sd3 appended for --family sd3)" };
        var only = new Option<string?>("--only") { Description = "run just this stage (the stages before it must be done)" };
        var baseModel = new Option<string?>("--base") { Description = "base model folder (default: assets/base-model, or assets/base-model-sd3 with --family sd3)" };
        var family = new Option<string>("--family")
        {
            Description = "base family: sd1 (the UNet base, DDIM sampling) or sd3 (the SD3 transformer base, flow-match Euler sampling; the comparison sweeps on its own validation prompts)",
            DefaultValueFactory = _ => ModelFamily.Sd1,
        };
        family.AcceptOnlyFromAmong([.. StudySettings.Families]);
        var layers = new Option<string[]>("--layers")
        {
            Description = "CTCal layers of every fine-tune (module paths, all or auto) instead of the premise probe's choice; the report says so",
            AllowMultipleArgumentsPerToken = true,
        };
        var threads = new Option<int>("--threads") { Description = "torch threads of the trainer, ONNX Runtime threads per session", DefaultValueFactory = _ => 1 };
        var parallel = new Option<int?>("--parallel") { Description = "fine-tunes / generations at a time (default: 2, or 1 on a single core)" };
        foreach (var o in new Option[] { quick, output, only, baseModel, family, layers, threads, parallel })
        {
            command.Options.Add(o);
        }

        command.SetAction((parse, ct) => Guarded(console, async () =>
        {
            bool q = parse.GetValue(quick);
            string f = parse.GetValue(family)!;
            string suffix = f == ModelFamily.Sd1 ? "" : "-" + f;
            var settings = new StudySettings
            {
                OutputFolder = Path.GetFullPath(parse.GetValue(output) ?? (q ? (comparison ? "runs/quick" : "runs/study-quick") : $"runs/{name}") + suffix),
                BaseModel = Path.GetFullPath(parse.GetValue(baseModel) ?? BuildInfo.DefaultBaseModel(f)),
                Family = f,
                Layers = parse.GetValue(layers) is { Length: > 0 } l ? l : null,
                Threads = parse.GetValue(threads),
                Parallel = parse.GetValue(parallel) ?? Math.Clamp(Environment.ProcessorCount, 1, 2),
            };
            settings = q ? settings.ForQuick() : settings;
            settings = comparison ? settings.ForComparison() : settings;
            settings = settings.ForFamily();
            settings.Validate();
            RunLog.SetCommandFolder(settings.OutputFolder);

            var runner = new StudyRunner(comparison ? StudyStages.Comparison(f) : StudyStages.Default(), settings, line => console.MarkupLine(Markup.Escape(line)));
            await runner.RunAsync(parse.GetValue(only), ct);
            console.MarkupLine(Markup.Escape($"{name}: {Path.Combine(settings.OutputFolder, StudyReport.FileName)}"));
        }));
    }

    private static MainJobOptions ToOptions(ParseResult parse, CommonOptions o, double? lr, string? seeds, double? weight, string verb)
    {
        bool quick = parse.GetValue(o.Quick);
        var recipe = quick ? MainJobRecipe.Quick : new MainJobRecipe();
        recipe = recipe with
        {
            Steps = parse.GetValue(o.Steps) ?? recipe.Steps,
            LearningRate = lr ?? recipe.LearningRate,
            BatchSize = parse.GetValue(o.BatchSize) ?? recipe.BatchSize,
            Warmup = parse.GetValue(o.Warmup) ?? recipe.Warmup,
            Seeds = seeds is null ? recipe.Seeds : ParseSeeds(seeds),
            CtcalWeight = weight ?? recipe.CtcalWeight,
            ImageSeeds = parse.GetValue(o.ImageSeeds) ?? recipe.ImageSeeds,
            PromptsPerCategory = parse.GetValue(o.Prompts) ?? recipe.PromptsPerCategory,
            SamplingSteps = parse.GetValue(o.SamplingSteps) ?? recipe.SamplingSteps,
            Guidance = parse.GetValue(o.Guidance) ?? recipe.Guidance,
        };
        if (recipe.Warmup >= recipe.Steps && parse.GetValue(o.Warmup) is null)
        {
            recipe = recipe with { Warmup = recipe.Steps / 10 };
        }

        var overrides = new List<FineTuneJobSetting>();
        if (parse.GetValue(o.TeacherT) is { } t)
        {
            overrides.Add(new("teacher-t", t));
        }

        if (parse.GetValue(o.Layers) is { Length: > 0 } layers)
        {
            overrides.Add(new("layers", layers));
        }

        if (parse.GetValue(o.Full))
        {
            overrides.Add(new("full", true));
        }

        if (parse.GetValue(o.LoraRank) is { } rank)
        {
            overrides.Add(new("lora-rank", rank));
        }

        if (parse.GetValue(o.Distance) is { } distance)
        {
            overrides.Add(new("distance", distance));
        }

        foreach (var (key, value) in new[] { ("reconstruction-weight", parse.GetValue(o.ReconstructionWeight)), ("balance-weight", parse.GetValue(o.BalanceWeight)), ("tau", parse.GetValue(o.Tau)) })
        {
            if (value is { } v)
            {
                overrides.Add(new(key, v));
            }
        }

        var trailing = parse.GetValue(o.Extra) ?? [];
        if (trailing.Length > 0 && !parse.Tokens.Any(t => t.Type == TokenType.DoubleDash))
        {
            throw new ArgumentException($"unrecognised argument(s): {string.Join(' ', trailing)} (trainer arguments go after --)");
        }

        try
        {
            overrides.AddRange(FineTuneJobJson.ParseArguments(trailing));
        }
        catch (FormatException e)
        {
            throw new ArgumentException(e.Message, e);
        }

        string defaultOut = verb == "sweep" ? "runs/sweep" : quick ? "runs/renders-quick" : "runs/renders";
        var options = new MainJobOptions
        {
            Recipe = recipe,
            OutputFolder = Path.GetFullPath(parse.GetValue(o.Out) ?? defaultOut),
            BaseModel = parse.GetValue(o.Base) is { } b ? Path.GetFullPath(b) : null,
            FromScratch = parse.GetValue(o.FromScratch),
            Quick = quick,
            Threads = parse.GetValue(o.Threads),
            Parallel = parse.GetValue(o.Parallel) ?? Math.Clamp(Environment.ProcessorCount, 1, 2),
            TrainerOverrides = overrides,
            WriteReport = verb != "sweep",
            Label = verb,
        };
        options.Validate();
        return options;
    }

    /// <summary>"1,2,3" or a count "3" (seeds 1..3).</summary>
    public static IReadOnlyList<long> ParseSeeds(string text)
    {
        if (!text.Contains(',', StringComparison.Ordinal) && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int count))
        {
            return count > 0 ? Enumerable.Range(1, count).Select(i => (long)i).ToList() : throw new ArgumentException($"--seeds: '{text}' must be a positive count or a list of seeds");
        }

        return text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(s => long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? v : throw new ArgumentException($"--seeds: '{s}' is not an integer"))
            .ToList();
    }

    /// <summary>A comma-separated list of numbers; the message names <paramref name="option"/>.</summary>
    public static IReadOnlyList<double> ParseList(string text, string option) =>
        text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v) ? v : throw new ArgumentException($"{option}: '{s}' is not a number"))
            .ToList();

    /// <summary>Parses and runs; bad usage exits 2 (System.CommandLine's own parse errors too), cancellation 130, failures 1.</summary>
    public static async Task<int> RunAsync(string[] args, IAnsiConsole console, CancellationToken ct)
    {
        var root = Build(console);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                console.MarkupLine($"[red]error:[/] {Markup.Escape(error.Message)}");
            }

            return ExitCodes.BadUsage;
        }

        return await parse.InvokeAsync(cancellationToken: ct);
    }

    private static async Task<int> Guarded(IAnsiConsole console, Func<Task> body)
    {
        var log = LogManager.GetLogger("ctcal-main");
        using var folder = RunLog.ForCommand(); // the command names its folder (RunLog.SetCommandFolder) once its options are read
        try
        {
            await body();
            return ExitCodes.Ok;
        }
        catch (OperationCanceledException)
        {
            console.MarkupLine("[yellow]cancelled[/]");
            log.Warn("cancelled");
            return ExitCodes.Cancelled;
        }
        catch (Exception e) when (e is ArgumentException or PluginsFileException)
        {
            console.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
            log.Error(e, "bad usage");
            return ExitCodes.BadUsage;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            string message = e is FineTuneException or InvalidOperationException or IOException or InvalidDataException
                ? e.Message : $"{e.GetType().Name}: {e.Message}";
            console.MarkupLine($"[red]error:[/] {Markup.Escape(message)}");
            log.Error(e, "failed");
            return ExitCodes.Failure;
        }
    }
}

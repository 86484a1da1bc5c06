using System.CommandLine;
using System.Globalization;
using CTCal.BaseModel;
using CTCal.Synthetic;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>ctcal-train base ceiling --vae &lt;folder&gt; --out &lt;folder&gt;</c>: the rule-based evaluator's ceiling on a model's VAE
/// round trips (<see cref="EvaluatorCeiling"/>); writes ceiling.json, ceiling.md and ceiling_failures.png.
/// <paramref name="args"/> is the whole command line, recorded in the report.
/// </summary>
internal sealed class BaseCeilingCommand(CliContext context, string[] args)
{
    public Command Build()
    {
        var vae = new Option<string>("--vae") { Description = "VAE folder, or a diffusers folder with vae/ (e.g. assets/base-model)", Required = true };
        var output = new Option<string>("--out") { Description = "folder for ceiling.json, ceiling.md and ceiling_failures.png", Required = true };
        var layouts = new Option<int>("--layouts") { Description = "seeded layouts per evaluation prompt", DefaultValueFactory = _ => 5 };
        var train = new Option<int>("--train-per-category") { Description = "training records per category", DefaultValueFactory = _ => 200 };
        var worldSeed = new Option<long>("--world-seed") { Description = "world seed (split, evaluation prompts, training records)", DefaultValueFactory = _ => 1 };
        var seed = new Option<long>("--seed") { Description = "seed of the evaluation layouts", DefaultValueFactory = _ => 7 };
        var threads = new Option<int>("--threads") { Description = "torch CPU threads (0: library default)", DefaultValueFactory = _ => 0 };
        var command = new Command("ceiling", "Measure the evaluator's ceiling: ground-truth scenes through the VAE (encode, decode), scored against their own prompt.");
        foreach (var o in new Option[] { vae, output, layouts, train, worldSeed, seed, threads }) command.Options.Add(o);
        command.SetAction(parse => context.Guarded(() =>
        {
            CliContext.SetThreads(parse.GetValue(threads));
            long ws = parse.GetValue(worldSeed), s = parse.GetValue(seed);
            if (ws < 0) throw new UsageException($"--world-seed: {ws} must be >= 0");
            if (s < 0) throw new UsageException($"--seed: {s} must be >= 0");
            var options = new CeilingOptions
            {
                World = new SyntheticWorldOptions { Seed = (ulong)ws, TrainCount = 2000 },
                LayoutsPerEvalPrompt = parse.GetValue(layouts), TrainPerCategory = parse.GetValue(train), Seed = (ulong)s,
            };
            var problems = options.Problems();
            if (problems.Count > 0) throw new UsageException(string.Join("; ", problems));
            string outFolder = parse.GetValue(output)!;
            var evaluator = new Evaluator();
            var trips = new List<(CeilingCase, RgbaImage, RgbaImage)>();
            var report = EvaluatorCeiling.Measure(parse.GetValue(vae)!, options, evaluator, trips);
            EvaluatorCeiling.Write(report, outFolder, trips, evaluator, BaseVerb.CommandLine(args));
            foreach (var c in report.Categories)
                context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ceiling {c.Category.ToString().ToLowerInvariant()}: {c.Scenes} scenes, clean {c.Clean:P1}, round trip {c.RoundTrip:P1}"));
            context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ceiling overall: {report.Overall.Scenes} scenes, clean {report.Overall.Clean:P1}, round trip {report.Overall.RoundTrip:P1}, {report.Failures.Count} failures -> {outFolder}"));
            return ExitCodes.Ok;
        }));
        return command;
    }
}

using System.CommandLine;
using System.Globalization;
using System.Text;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Hosting;
using CTCal.MainJob.Study;
using CTCal.Synthetic;
using Spectre.Console;

namespace CTCal.MainJob;

/// <summary>
/// <c>ctcal-main precision --model A --model B</c>: scores exported ONNX model folders of one base (e.g. the shipped base
/// exported with <c>ctcal-export --precision fp32</c> and <c>--precision fp16</c>) exactly as the main comparison scores its
/// base: the study world's test prompts (<see cref="PromptSplit"/> of the base's world), the evaluation image seeds, sampler,
/// steps and guidance of <see cref="StudySettings"/>, generated through the plugin (<see cref="StudyModels.GenerateAsync"/>)
/// and scored by the <see cref="Evaluator"/>; then each model's scores (<see cref="StudyTables.Measured"/>) and the paired
/// difference of every later model against the first with its 95% prompt-cluster bootstrap interval
/// (<see cref="StudyTables.Differences"/>; the images are paired by prompt and seed). Writes <c>precision.md</c>.
/// </summary>
internal static class PrecisionComparison
{
    public const string ReportFile = "precision.md";

    public static Command Create(Func<Func<Task>, Task<int>> guarded, IAnsiConsole console)
    {
        var models = new Option<string[]>("--model")
        {
            Description = "an exported ONNX model folder (ctcal_manifest.json); two or more, the first is the reference (A)",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var output = new Option<string>("--out") { Description = "output folder (images, host, precision.md)", DefaultValueFactory = _ => "runs/precision" };
        var baseModel = new Option<string?>("--base") { Description = "the diffusers base the models were exported from, for its world's test prompts (default: assets/base-model)" };
        var quick = new Option<bool>("--quick") { Description = "smoke settings: 3 test prompts per category, 1 image each, 20 steps" };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime threads per session", DefaultValueFactory = _ => 1 };
        var command = new Command("precision", "Score exported ONNX folders of one base (e.g. fp32 and fp16 exports) on the study's test prompts; paired differences against the first");
        foreach (var o in new Option[] { models, output, baseModel, quick, threads }) command.Options.Add(o);
        command.SetAction((parse, ct) => guarded(async () =>
        {
            var folders = parse.GetValue(models)!.Select(Path.GetFullPath).ToList();
            if (folders.Count < 2) throw new ArgumentException($"--model: give at least two ONNX folders to compare, got {folders.Count}");
            foreach (string f in folders)
                if (OnnxModelManifest.TryRead(f) is null) throw new ArgumentException($"--model '{f}' is not an exported ONNX folder (no {OnnxModelManifest.FileName})");
            var ids = folders.Select(Id).ToList();
            if (ids.Distinct().Count() != ids.Count) throw new ArgumentException($"--model: folder names must differ (they are the model ids): {string.Join(", ", ids)}");
            var settings = new StudySettings
            {
                OutputFolder = Path.GetFullPath(parse.GetValue(output)!),
                BaseModel = Path.GetFullPath(parse.GetValue(baseModel) ?? BuildInfo.DefaultBaseModel()),
                Threads = parse.GetValue(threads),
                Parallel = 1,
            };
            settings = parse.GetValue(quick) ? settings.ForQuick() : settings;
            settings.Validate();
            string report = await RunAsync(settings, folders, ids, line => console.MarkupLine(Markup.Escape(line)), ct);
            console.WriteLine(report);
            console.MarkupLine(Markup.Escape($"precision: {Path.Combine(settings.OutputFolder, ReportFile)}"));
        }));
        return command;
    }

    private static string Id(string folder) => Path.GetFileName(folder.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar)).ToLowerInvariant();

    private static async Task<string> RunAsync(StudySettings settings, IReadOnlyList<string> folders, IReadOnlyList<string> ids, Action<string> say, CancellationToken ct)
    {
        // the world and test prompts of the study's world stage (WorldStudyStage), without writing its dataset
        var world = DatasetStage.WorldFor(BaseRecipeInfo.Read(settings.BaseModel), new MainJobRecipe { DatasetCount = settings.DatasetCount });
        var split = PromptSplit.Create(SyntheticWorld.Create(world), settings.Split);
        var evaluation = new StudyEvaluation(split.Test, settings.EvaluationImageSeedBase, settings.TestImageSeeds, settings.SamplingSteps, settings.Guidance,
            world.ImageSize, settings.Scheduler);
        string folder = settings.OutputFolder;
        string hostFolder = Path.Combine(folder, StudyModels.HostFolder);
        for (int i = 0; i < folders.Count; i++)
        {
            string target = Path.Combine(hostFolder, "models", ids[i]);
            if (Directory.Exists(target)) Directory.Delete(target, true);
            CopyFolder(folders[i], target);
        }

        using var host = HostWorkspace.Open(hostFolder, BuildInfo.PluginFolder(), settings.Threads, new NLogSink("ctcal-main.host"), id => new NLogSink($"plugin.{id}"));
        var evaluator = new Evaluator();
        var results = new List<StudyModelResult>();
        for (int i = 0; i < folders.Count; i++)
        {
            say($"precision: {ids[i]} ({OnnxModelManifest.TryRead(folders[i])!.PrecisionOrDerived}): {evaluation.Prompts.Count} test prompts x {evaluation.ImageSeeds} images");
            var images = await StudyModels.GenerateAsync(host.Generator, folder, ids[i], ids[i], evaluation, evaluator, ct);
            results.Add(new StudyModelResult(new StudyModel(ids[i], ids[i], 0, null), images, null));
        }

        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Exported models of one base on the test prompts{(settings.Quick ? " (quick settings)" : "")}");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"{evaluation.Prompts.Count} test prompts x {evaluation.ImageSeeds} images (seeds {evaluation.ImageSeedBase}..), {evaluation.Scheduler} {evaluation.SamplingSteps} steps, guidance {evaluation.Guidance}, {evaluation.Resolution} px; base {settings.BaseModel}.");
        md.AppendLine();
        for (int i = 0; i < folders.Count; i++)
            md.AppendLine(CultureInfo.InvariantCulture, $"- `{ids[i]}`: {folders[i]} (precision {OnnxModelManifest.TryRead(folders[i])!.PrecisionOrDerived})");
        md.AppendLine();
        md.AppendLine(StudyTables.Measured(results));
        md.AppendLine(StudyTables.Differences(results.Skip(1).Select(r => ($"{r.Model.Id} - {results[0].Model.Id}", (IReadOnlyList<StudyModelResult>)[results[0]], (IReadOnlyList<StudyModelResult>)[r])).ToList()));
        foreach (var r in results.Skip(1))
        {
            int same = results[0].Images.Zip(r.Images, (a, b) => a.Overall == b.Overall && a.Primary == b.Primary).Count(x => x);
            md.AppendLine(CultureInfo.InvariantCulture, $"Images scored the same by `{results[0].Model.Id}` and `{r.Model.Id}`: {same} of {r.Images.Count}.");
        }
        string text = md.ToString();
        AtomicFile.WriteText(Path.Combine(folder, ReportFile), text);
        return text;
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (string dir in Directory.GetDirectories(from)) CopyFolder(dir, Path.Combine(to, Path.GetFileName(dir)));
    }
}

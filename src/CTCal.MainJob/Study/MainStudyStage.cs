using System.Globalization;
using System.Text;
using CTCal.Core.IO;
using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>main</c>: the published comparison on the <b>test</b> prompts: the base, GORS (the base fine-tuned on
/// its own reward-selected generations, the gors-data stage's dataset) and GORS + CTCal (the same data, recipe, steps and
/// seeds plus the CTCal term), each at the sweep's chosen point, with <see cref="StudySettings.MainSeeds"/> paired
/// fine-tune seeds and <see cref="StudySettings.TestImageSeeds"/> images per prompt. The report leads with the verdict
/// per metric from paired cluster-bootstrap intervals (<see cref="StudyComparison"/>), then the table of means, the
/// differences and an image grid.
/// </summary>
public sealed class MainStudyStage : IStudyStage
{
    /// <summary>The grid picture (rows: test prompts; columns: base, GORS, GORS + CTCal of the first seed).</summary>
    public const string GridFile = "grid.png";

    /// <summary>Condition names.</summary>
    public const string Base = "base", Gors = "gors", GorsCtcal = "gors+ctcal";

    private readonly StudyBase _base;

    /// <summary>The stage for <paramref name="studyBase"/> (default: the shipped base).</summary>
    public MainStudyStage(StudyBase? studyBase = null) => _base = studyBase ?? StudyBase.Shipped;

    /// <summary>The base this stage works on.</summary>
    public StudyBase Setting => _base;

    /// <inheritdoc/>
    public string Name => _base.Stage("main");

    /// <inheritdoc/>
    public bool Resumable => true;

    /// <summary>Model id of a main-comparison fine-tune.</summary>
    public static string Id(string condition, long seed) => string.Create(CultureInfo.InvariantCulture, $"{condition.Replace('+', '-')}-s{seed}");

    /// <summary>The test evaluation every test-prompt stage uses.</summary>
    public static StudyEvaluation TestEvaluation(StudyStageContext context)
    {
        var s = context.Settings;
        var world = WorldStudyStage.StudyWorld.Read(context.FolderOf("world"));
        var prompts = DatasetWriter.ReadEvalPrompts(Path.Combine(context.FolderOf("world"), WorldStudyStage.TestFile));
        return new StudyEvaluation(prompts, s.EvaluationImageSeedBase, s.TestImageSeeds, s.SamplingSteps, s.Guidance, world.ImageSize, s.Scheduler);
    }

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var s = context.Settings;
        // The weak base takes the shipped base's sweep choice (the sweep is not repeated) with its own premise layers.
        var choice = SweepStudyStage.Choice.Read(context.FolderOf("sweep"));
        if (_base.IsWeak) choice = choice with { Layers = SweepStudyStage.PremiseLayers(context, _base) };
        var models = new List<StudyModel> { new(Base, Base, 0, null) };
        foreach (long seed in s.MainSeeds)
        {
            models.Add(new StudyModel(Id(Gors, seed), Gors, seed, s.Recipe.Job(FineTuneStage.Vanilla, seed, choice.GorsLr, 0, choice.Layers)));
            models.Add(new StudyModel(Id(GorsCtcal, seed), GorsCtcal, seed, s.Recipe.Job(FineTuneStage.Ctcal, seed, choice.CtcalLr, choice.CtcalWeight, choice.Layers)));
        }

        var evaluation = TestEvaluation(context);
        string data = Path.Combine(context.FolderOf(_base.Stage("gors-data")), GorsDataStudyStage.DatasetFolder);
        var results = await StudyModels.RunAsync(context.Folder, s, _base.Model(context), data, models, evaluation, context.Say, ct);

        var baseModel = results.Where(r => r.Model.Condition == Base).ToList();
        var gors = results.Where(r => r.Model.Condition == Gors).ToList();
        var ctcal = results.Where(r => r.Model.Condition == GorsCtcal).ToList();
        var summary = new Dictionary<string, double> { ["test_prompts"] = evaluation.Prompts.Count, ["image_seeds"] = evaluation.ImageSeeds, ["seeds"] = s.MainSeeds.Count };
        foreach (string metric in StudyComparison.MetricNames)
        {
            foreach (var (label, a, b) in new[] { ("ctcal_vs_gors", gors, ctcal), ("gors_vs_base", baseModel, gors) })
            {
                if (StudyComparison.Compare(a, b, metric) is not { } r) continue;
                summary[$"{label}.{metric}.diff"] = r.Difference;
                summary[$"{label}.{metric}.low"] = r.Low;
                summary[$"{label}.{metric}.high"] = r.High;
            }
        }

        WriteGrid(context.Folder, evaluation, [Base, Id(Gors, s.MainSeeds[0]), Id(GorsCtcal, s.MainSeeds[0])]);
        context.Say(Name + ": " + StudyComparison.Verdict(GorsCtcal, Gors, "overall", StudyComparison.Compare(gors, ctcal, "overall")));
        return new StudyStageResult([StudyModels.ResultsFolder, GridFile], summary, []);
    }

    /// <summary>Rows: up to two test prompts per category, first image seed; columns: <paramref name="ids"/>.</summary>
    public static void WriteGrid(string folder, StudyEvaluation evaluation, IReadOnlyList<string> ids)
    {
        var rows = evaluation.Prompts.Select((p, i) => (p, i)).GroupBy(x => x.p.Category).SelectMany(g => g.Take(2))
            .Select(x => (IReadOnlyList<string?>)ids.Select(id => Path.Combine(folder, StudyModels.ImagesFolder, id, GenerateAndScoreStage.ImageFileName(x.i, evaluation.ImageSeedBase))).ToList<string?>())
            .ToList();
        if (ImageGrid.Compose(rows) is { } grid) AtomicFile.WriteBytes(Path.Combine(folder, GridFile), grid.EncodePng());
    }

    /// <summary>Every stored result of a main stage folder, and its base, GORS and GORS + CTCal models (fine-tunes in seed order).</summary>
    public static (IReadOnlyList<StudyModelResult> All, IReadOnlyList<StudyModelResult> Base, IReadOnlyList<StudyModelResult> Gors, IReadOnlyList<StudyModelResult> GorsCtcal)
        Conditions(string folder)
    {
        var results = StudyModels.ReadAll(folder);
        List<StudyModelResult> Of(string condition) => results.Where(r => r.Model.Condition == condition).OrderBy(r => r.Model.Seed).ToList();
        return (results, Of(Base), Of(Gors), Of(GorsCtcal));
    }

    /// <summary>The verdict of GORS + CTCal against GORS per metric, and the grid: the opening of the report (one per base).</summary>
    public static string Verdicts(string folder, StudyDone done, StudyBase? studyBase = null)
    {
        var (_, _, gors, ctcal) = Conditions(folder);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"**Verdict{(studyBase?.IsWeak == true ? " on the weak base" : "")}, GORS + CTCal against GORS** ({gors.Count} paired fine-tune seeds, {WorldStudyStage.Get(done, "test_prompts")} test prompts x {WorldStudyStage.Get(done, "image_seeds")} images per model; B - A in points, 95% paired bootstrap interval):");
        md.AppendLine();
        foreach (string metric in StudyComparison.MetricNames)
            md.AppendLine("- " + StudyComparison.Verdict(GorsCtcal, Gors, metric, StudyComparison.Compare(gors, ctcal, metric)));
        md.AppendLine();
        if (File.Exists(Path.Combine(folder, GridFile)))
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"![base | GORS | GORS + CTCal, first seed, two test prompts per category]({Path.GetFileName(folder)}/{GridFile})");
            md.AppendLine();
        }

        return md.ToString();
    }

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var (results, baseModel, gors, ctcal) = Conditions(folder);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Test prompts: {WorldStudyStage.Get(done, "test_prompts")} x {WorldStudyStage.Get(done, "image_seeds")} image seeds per model; {gors.Count} paired fine-tune seeds per method. Differences are B - A in points with 95% paired cluster-bootstrap intervals (prompts and seed pairs resampled); bold: the interval excludes 0.");
        md.AppendLine();
        md.AppendLine(StudyTables.Differences([("GORS + CTCal vs GORS", gors, ctcal), ("GORS vs base", baseModel, gors), ("GORS + CTCal vs base", baseModel, ctcal)]));
        md.AppendLine(StudyTables.Measured(results));
        md.AppendLine("Columns base | GORS | GORS + CTCal of the grid: `" + GridFile + "` (shown at the top).");
        return md.ToString();
    }
}

using System.Globalization;
using System.Text;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>ground-truth</c>, a second and clearly separate condition: the same recipe and chosen points, fine-tuned
/// on the world's ground-truth renders (the base's own training images, with subject masks) instead of the base's
/// generations: vanilla, CTCal, and CTCal with the <b>oracle</b> teacher (the renders' subject masks as teacher maps: the
/// upper bound of what a perfect teacher gives). Compared with each other and with the main stage's base.
/// </summary>
public sealed class GroundTruthStudyStage : IStudyStage
{
    /// <summary>Condition names.</summary>
    public const string Vanilla = "renders: vanilla", Ctcal = "renders: ctcal", Oracle = "renders: oracle teacher";

    /// <inheritdoc/>
    public string Name => "ground-truth";

    /// <inheritdoc/>
    public bool Resumable => true;

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var s = context.Settings;
        var choice = SweepStudyStage.Choice.Read(context.FolderOf("sweep"));
        context.FolderOf("main");
        var models = s.GroundTruthSeeds.SelectMany(seed => new[]
        {
            new StudyModel(Id("vanilla", seed), Vanilla, seed, s.Recipe.Job(FineTuneStage.Vanilla, seed, choice.GorsLr, 0, choice.Layers)),
            new StudyModel(Id("ctcal", seed), Ctcal, seed, s.Recipe.Job(FineTuneStage.Ctcal, seed, choice.CtcalLr, choice.CtcalWeight, choice.Layers)),
            new StudyModel(Id("oracle", seed), Oracle, seed, s.Recipe.Job(FineTuneStage.Ctcal, seed, choice.CtcalLr, choice.CtcalWeight, choice.Layers, j => j with { Teacher = "oracle" })),
        }).ToList();
        string data = Path.Combine(context.FolderOf("world"), WorldStudyStage.DataFolder);
        await StudyModels.RunAsync(context.Folder, s, s.BaseModel, data, models, MainStudyStage.TestEvaluation(context), context.Say, ct);
        return new StudyStageResult([StudyModels.ResultsFolder], new Dictionary<string, double> { ["seeds"] = s.GroundTruthSeeds.Count }, []);
    }

    private static string Id(string method, long seed) => string.Create(CultureInfo.InvariantCulture, $"renders-{method}-s{seed}");

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var results = StudyModels.ReadAll(folder);
        List<StudyModelResult> Of(string condition) => results.Where(r => r.Model.Condition == condition).OrderBy(r => r.Model.Seed).ToList();
        string mainFolder = StudyStages.SiblingFolder(folder, "main");
        var baseModel = StudyModels.Read(mainFolder, [MainStudyStage.Base]);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Fine-tunes on the ground-truth renders (not the GORS data), {Of(Vanilla).Count} seed(s), test prompts. The oracle teacher uses the renders' subject masks in place of the model's teacher-t maps.");
        md.AppendLine();
        md.AppendLine(StudyTables.Differences([("renders: ctcal vs vanilla", Of(Vanilla), Of(Ctcal)), ("renders: oracle vs vanilla", Of(Vanilla), Of(Oracle)),
            ("renders: oracle vs ctcal", Of(Ctcal), Of(Oracle)), ("renders: vanilla vs base", baseModel, Of(Vanilla))]));
        md.AppendLine(StudyTables.Measured(results));
        return md.ToString();
    }
}

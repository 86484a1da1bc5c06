using System.Globalization;
using System.Text;
using CTCal.Contracts;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>ablations</c>: GORS + CTCal at the sweep's point with one part changed, on the same GORS data, test
/// prompts and (a subset of the main stage's) seeds, compared pair by pair with the main stage's GORS + CTCal and GORS
/// models of the same seeds. The parts: the pixel term alone; no semantic term and no autoencoder; no subject balancing;
/// a constant instead of the t/T weighting; teacher timestep 100 instead of 0; every cross-attention layer at 16x16
/// instead of the premise probe's layers; and the shuffled-teacher control (the teacher maps of another sample: if it
/// scores like CTCal, the gain is regularisation, not calibration); and the KL distance between map distributions instead
/// of the MSE of mean-normalised maps (which also rewards sharpening, not only alignment). The oracle teacher needs masks the generated GORS
/// images do not have; it is in the ground-truth stage.
/// </summary>
public sealed class AblationStudyStage : IStudyStage
{
    /// <summary>The ablations: condition name and the change to the CTCal job.</summary>
    public static readonly IReadOnlyList<(string Name, Func<FineTuneJob, FineTuneJob> Change)> Variants =
    [
        ("pixel only", j => j with { SemanticWeight = 0, ReconstructionWeight = 0, BalanceWeight = 0 }),
        ("no semantic, no autoencoder", j => j with { SemanticWeight = 0, ReconstructionWeight = 0 }),
        ("no balancing", j => j with { BalanceWeight = 0 }),
        ("constant weighting", j => j with { TimeWeighting = "constant" }),
        ("teacher t 100", j => j with { TeacherT = 100 }),
        ("all layers at 16x16", j => j with { Layers = ["all"], MapResolution = 16 }),
        ("shuffled teacher", j => j with { Teacher = "shuffled" }),
        ("KL distance", j => j with { Distance = "kl" }),
    ];

    /// <inheritdoc/>
    public string Name => "ablations";

    /// <inheritdoc/>
    public bool Resumable => true;

    /// <summary>Model id of an ablation fine-tune.</summary>
    public static string Id(string variant, long seed) =>
        string.Create(CultureInfo.InvariantCulture, $"{new string(variant.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray()).Replace("--", "-", StringComparison.Ordinal)}-s{seed}");

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var s = context.Settings;
        var choice = SweepStudyStage.Choice.Read(context.FolderOf("sweep"));
        context.FolderOf("main"); // the comparisons read its models
        var models = Variants.SelectMany(v => s.AblationSeeds.Select(seed => new StudyModel(Id(v.Name, seed), v.Name, seed,
            s.Recipe.Job(FineTuneStage.Ctcal, seed, choice.CtcalLr, choice.CtcalWeight, choice.Layers, v.Change)))).ToList();
        string data = Path.Combine(context.FolderOf("gors-data"), GorsDataStudyStage.DatasetFolder);
        await StudyModels.RunAsync(context.Folder, s, s.BaseModel, data, models, MainStudyStage.TestEvaluation(context), context.Say, ct);
        return new StudyStageResult([StudyModels.ResultsFolder], new Dictionary<string, double> { ["seeds"] = s.AblationSeeds.Count, ["variants"] = Variants.Count }, []);
    }

    /// <summary>The main stage's models of <paramref name="condition"/> for <paramref name="seeds"/>, in seed order.</summary>
    public static IReadOnlyList<StudyModelResult> MainModels(string mainFolder, string condition, IEnumerable<long> seeds) =>
        StudyModels.Read(mainFolder, seeds.Order().Select(seed => MainStudyStage.Id(condition, seed)));

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var results = StudyModels.ReadAll(folder);
        var seeds = results.Select(r => r.Model.Seed).Distinct().Order().ToList();
        string mainFolder = StudyStages.SiblingFolder(folder, "main");
        var ctcal = MainModels(mainFolder, MainStudyStage.GorsCtcal, seeds);
        var gors = MainModels(mainFolder, MainStudyStage.Gors, seeds);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Each variant of GORS + CTCal at {seeds.Count} seed(s) ({string.Join(", ", seeds)}), on the test prompts, paired with the main stage's models of the same seeds. \"vs GORS + CTCal\" near 0 means the part does not matter; \"vs GORS\" is what the variant keeps of CTCal's effect.");
        md.AppendLine();
        var comparisons = new List<(string, IReadOnlyList<StudyModelResult>, IReadOnlyList<StudyModelResult>)>();
        foreach (var group in results.GroupBy(r => r.Model.Condition))
        {
            var variant = group.OrderBy(r => r.Model.Seed).ToList();
            comparisons.Add(($"{group.Key} vs GORS + CTCal", ctcal, variant));
            comparisons.Add(($"{group.Key} vs GORS", gors, variant));
        }

        md.AppendLine(StudyTables.Differences(comparisons));
        md.AppendLine(StudyTables.Measured(results));
        return md.ToString();
    }
}

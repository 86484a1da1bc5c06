using System.Globalization;
using System.Text.Json;
using CTCal.Core.IO;

namespace CTCal.MainJob.Study;

/// <summary>
/// The main comparison's stand-in for the sweep (README command 1): it writes the sweep's <c>choice.json</c> with the
/// values the study's own sweep chose on the validation prompts (<see cref="Committed"/>, recorded with the study report
/// in docs/study/) instead of sweeping again, so <c>ctcal-main</c> runs the main comparison in a fraction of the study's
/// time. It is named <c>sweep</c> so that the main stage reads it as it reads a real sweep; its report says it did not
/// sweep.
/// </summary>
public sealed class ChosenRecipeStudyStage : IStudyStage
{
    /// <summary>
    /// GORS learning rate, GORS + CTCal learning rate and CTCal weight chosen by <c>ctcal-main study</c>'s sweep stage on
    /// the validation prompts (docs/study/study.md, section 04-sweep). The layers are this run's premise probe's.
    /// </summary>
    public static readonly (double GorsLr, double CtcalLr, double CtcalWeight) Committed = (1e-4, 1e-4, 0.03);

    /// <inheritdoc/>
    public string Name => "sweep";

    /// <inheritdoc/>
    public bool Resumable => false;

    /// <inheritdoc/>
    public Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var choice = new SweepStudyStage.Choice(Committed.GorsLr, Committed.CtcalLr, Committed.CtcalWeight, SweepStudyStage.PremiseLayers(context));
        AtomicFile.WriteText(Path.Combine(context.Folder, SweepStudyStage.ChoiceFile), JsonSerializer.Serialize(choice, RunResults.Json));
        var summary = new Dictionary<string, double> { ["gors_lr"] = choice.GorsLr, ["ctcal_lr"] = choice.CtcalLr, ["ctcal_weight"] = choice.CtcalWeight };
        return Task.FromResult(new StudyStageResult([SweepStudyStage.ChoiceFile], summary, []));
    }

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var c = SweepStudyStage.Choice.Read(folder);
        return string.Create(CultureInfo.InvariantCulture,
            $"Not swept in this run: GORS lr {c.GorsLr:G3}; GORS + CTCal lr {c.CtcalLr:G3}, weight {c.CtcalWeight:G3}: the points `ctcal-main study` chose on the validation prompts (docs/study/study.md). Layers: {SweepStudyStage.LayersText(c.Layers)}.");
    }
}

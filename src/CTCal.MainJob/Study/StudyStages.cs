using CTCal.Core.Models;

namespace CTCal.MainJob.Study;

/// <summary>The stages of <c>ctcal-main study</c>, in order.</summary>
public static class StudyStages
{
    /// <summary>
    /// world, premise, gors-data, sweep, main, ablations, ground-truth, ceiling; then the second setting on a weaker base
    /// (<see cref="StudyBase.Weak"/>): weak-base, weak-premise, weak-gors-data, weak-main.
    /// </summary>
    public static IReadOnlyList<IStudyStage> Default() =>
    [
        new WorldStudyStage(), new PremiseStudyStage(), new GorsDataStudyStage(), new SweepStudyStage(), new MainStudyStage(),
        new AblationStudyStage(), new GroundTruthStudyStage(), new CeilingStudyStage(),
        new WeakBaseStudyStage(), new PremiseStudyStage(StudyBase.Weak), new GorsDataStudyStage(StudyBase.Weak), new MainStudyStage(StudyBase.Weak),
    ];

    /// <summary>
    /// The main comparison of README command 1: world, premise, gors-data, the study's chosen recipe
    /// (<see cref="ChosenRecipeStudyStage"/> in place of the sweep), main, ceiling. The committed choice was made on the
    /// UNet base's validation prompts, so on another <paramref name="family"/> (SD3) the comparison runs the real sweep
    /// (<see cref="SweepStudyStage"/>, the same search budget for both methods) instead of borrowing it.
    /// </summary>
    public static IReadOnlyList<IStudyStage> Comparison(string family = ModelFamily.Sd1) =>
    [
        new WorldStudyStage(), new PremiseStudyStage(), new GorsDataStudyStage(),
        family == ModelFamily.Sd1 ? new ChosenRecipeStudyStage() : new SweepStudyStage(), new MainStudyStage(), new CeilingStudyStage(),
    ];

    /// <summary>
    /// The folder of stage <paramref name="name"/> of <see cref="Default"/> beside <paramref name="stageFolder"/> (another
    /// stage's folder of the same study): for a report, which gets only its own folder.
    /// </summary>
    public static string SiblingFolder(string stageFolder, string name) =>
        Path.Combine(Path.GetDirectoryName(stageFolder)!, StudyRunner.FolderName(IndexOf(name), name));

    /// <summary>Position of stage <paramref name="name"/> in <see cref="Default"/>.</summary>
    /// <exception cref="ArgumentException">No such stage.</exception>
    public static int IndexOf(string name)
    {
        int i = Default().ToList().FindIndex(s => s.Name == name);
        return i >= 0 ? i : throw new ArgumentException($"no study stage '{name}'", nameof(name));
    }
}

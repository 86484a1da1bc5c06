namespace CTCal.MainJob.Study;

/// <summary>The stages of <c>ctcal-main study</c>, in order.</summary>
public static class StudyStages
{
    /// <summary>world, premise, gors-data, sweep, main, ablations, ground-truth, ceiling.</summary>
    public static IReadOnlyList<IStudyStage> Default() =>
    [
        new WorldStudyStage(), new PremiseStudyStage(), new GorsDataStudyStage(), new SweepStudyStage(), new MainStudyStage(),
        new AblationStudyStage(), new GroundTruthStudyStage(), new CeilingStudyStage(),
    ];

    /// <summary>
    /// The main comparison of README command 1: world, premise, gors-data, the study's chosen recipe
    /// (<see cref="ChosenRecipeStudyStage"/> in place of the sweep), main, ceiling.
    /// </summary>
    public static IReadOnlyList<IStudyStage> Comparison() =>
        [new WorldStudyStage(), new PremiseStudyStage(), new GorsDataStudyStage(), new ChosenRecipeStudyStage(), new MainStudyStage(), new CeilingStudyStage()];

    /// <summary>Position of stage <paramref name="name"/> in <see cref="Default"/>.</summary>
    /// <exception cref="ArgumentException">No such stage.</exception>
    public static int IndexOf(string name)
    {
        int i = Default().ToList().FindIndex(s => s.Name == name);
        return i >= 0 ? i : throw new ArgumentException($"no study stage '{name}'", nameof(name));
    }
}

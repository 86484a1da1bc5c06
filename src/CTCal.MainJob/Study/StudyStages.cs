namespace CTCal.MainJob.Study;

/// <summary>The stages of <c>ctcal-main study</c>, in order.</summary>
public static class StudyStages
{
    /// <summary>world, premise, gors-data (the stages implemented so far; see <see cref="StudyReport.NotImplemented"/>).</summary>
    public static IReadOnlyList<IStudyStage> Default() => [new WorldStudyStage(), new PremiseStudyStage(), new GorsDataStudyStage()];
}

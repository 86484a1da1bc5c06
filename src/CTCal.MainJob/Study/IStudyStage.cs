namespace CTCal.MainJob.Study;

/// <summary>
/// One named stage of <c>ctcal-main study</c>. It writes only into its own folder
/// (<see cref="StudyStageContext.Folder"/>), reads earlier stages' outputs by path
/// (<see cref="StudyStageContext.FolderOf"/>) and returns what it produced; <see cref="StudyRunner"/> then writes its
/// <c>done.json</c>.
/// </summary>
public interface IStudyStage
{
    /// <summary>Short name (the folder is <c>&lt;nn&gt;-&lt;name&gt;</c>); lowercase letters, digits and '-'.</summary>
    string Name { get; }

    /// <summary>
    /// Whether a folder left by a killed run is kept for the stage to resume from its own checkpoints (it must then
    /// check what it reuses); otherwise the runner clears the folder before running the stage again.
    /// </summary>
    bool Resumable { get; }

    /// <summary>Runs the stage into <see cref="StudyStageContext.Folder"/> (which exists).</summary>
    Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct);

    /// <summary>The stage's section of <c>study.md</c> (markdown, without its heading), from its done folder.</summary>
    string Report(string folder, StudyDone done);
}

/// <summary>What a stage produced.</summary>
/// <param name="Produced">Files and folders it wrote, relative to its folder.</param>
/// <param name="Summary">Named numbers for the report and for later stages (counts, rates, times).</param>
/// <param name="Notes">Sentences worth reading (shortfalls, reused inputs).</param>
public sealed record StudyStageResult(IReadOnlyList<string> Produced, IReadOnlyDictionary<string, double> Summary, IReadOnlyList<string> Notes);

namespace CTCal.MainJob.Study;

/// <summary>
/// Which base model a study stage works on: the shipped one (<see cref="StudySettings.BaseModel"/>, stage names as they
/// are) or the weaker one the <c>weak-base</c> stage trains (stage names prefixed <c>weak-</c>). The premise, gors-data
/// and main stages run once per base; the sweep is not repeated on the weak base (its main stage takes the shipped
/// base's choice of learning rates and weight, the same for both methods, with its own premise probe's layers).
/// </summary>
/// <param name="Prefix">Prefix of the stage names of this base ("" or "weak-").</param>
public sealed record StudyBase(string Prefix)
{
    /// <summary>The shipped base (<see cref="StudySettings.BaseModel"/>).</summary>
    public static StudyBase Shipped { get; } = new("");

    /// <summary>The weaker base of stage <c>weak-base</c>.</summary>
    public static StudyBase Weak { get; } = new("weak-");

    /// <summary>Whether this is the weak base.</summary>
    public bool IsWeak => Prefix.Length > 0;

    /// <summary>The name of stage <paramref name="name"/> for this base (<c>main</c> -> <c>weak-main</c>).</summary>
    public string Stage(string name) => Prefix + name;

    /// <summary>The model folder of this base.</summary>
    public string Model(StudyStageContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return IsWeak ? WeakBaseStudyStage.ModelFolder(context.FolderOf(WeakBaseStudyStage.StageName)) : context.Settings.BaseModel;
    }

    /// <summary>Words for reports: "the shipped base" or "the weak base".</summary>
    public string Words => IsWeak ? "the weak base" : "the shipped base";
}

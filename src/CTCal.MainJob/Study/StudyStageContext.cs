namespace CTCal.MainJob.Study;

/// <summary>What a running stage is given: its folder, the study settings, the earlier stages' folders, a message sink.</summary>
public sealed class StudyStageContext
{
    private readonly Func<string, string> _folderOf;

    internal StudyStageContext(string folder, StudySettings settings, Func<string, string> folderOf, Action<string> say)
    {
        Folder = folder;
        Settings = settings;
        _folderOf = folderOf;
        Say = say;
    }

    /// <summary>This stage's folder (exists; empty unless the stage is resumable and was interrupted).</summary>
    public string Folder { get; }

    /// <summary>The study's settings.</summary>
    public StudySettings Settings { get; }

    /// <summary>Writes a progress line.</summary>
    public Action<string> Say { get; }

    /// <summary>The folder of the earlier stage <paramref name="stage"/>, which must be done.</summary>
    /// <exception cref="InvalidOperationException">That stage is unknown, later, or not done.</exception>
    public string FolderOf(string stage) => _folderOf(stage);
}

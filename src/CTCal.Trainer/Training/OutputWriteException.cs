namespace CTCal.Trainer.Training;

/// <summary>
/// A file or folder of the run's output could not be written (read-only folder, disk full, a folder in the way, ...).
/// The message names the path; <c>ctcal-train</c> exits with code 4. Whatever was written before (earlier checkpoints)
/// is left as it was.
/// </summary>
public sealed class OutputWriteException(string path, string message, Exception? inner = null)
    : IOException($"{path}: {message}", inner)
{
    /// <summary>The file or folder that could not be written.</summary>
    public string Path { get; } = path;
}

using CTCal.Core.IO;
using CTCal.Trainer.Training;
using NLog;

namespace CTCal.Trainer.Cli;

/// <summary>
/// Puts a run's output folder back as it was when the run fails before its first step: a folder this run created is
/// removed; in a folder that was there before, the files and folders the run added are removed, <c>train_config.json</c>
/// gets its old bytes back and <c>train.log</c> its old length. The file log is pointed away from the folder first, so the
/// error reported after the restore does not write into it again. <see cref="Commit"/> (called on the first finished step,
/// or by the command when the run ends without a step) keeps everything from then on, and then removes the temporary files
/// a killed earlier run left behind.
/// </summary>
internal sealed class OutputFolderGuard : ITrainingObserver, IDisposable
{
    private static readonly string[] RewrittenFiles = ["train_config.json"];
    private static readonly string[] AppendedFiles = ["train.log"];
    private static readonly Logger Log = LogManager.GetLogger("ctcal-train");

    private readonly string _folder;
    private readonly bool _existed;
    private readonly HashSet<string> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, byte[]> _rewritten = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _appended = new(StringComparer.Ordinal);

    private readonly LogFolder _log;

    public OutputFolderGuard(string folder, LogFolder log)
    {
        _log = log;
        _folder = Path.GetFullPath(folder);
        _existed = Directory.Exists(_folder);
        if (!_existed) return;
        foreach (string entry in Directory.EnumerateFileSystemEntries(_folder, "*", SearchOption.AllDirectories))
            _entries.Add(Path.GetRelativePath(_folder, entry));
        foreach (string name in RewrittenFiles)
            if (File.Exists(Path.Combine(_folder, name))) _rewritten[name] = File.ReadAllBytes(Path.Combine(_folder, name));
        foreach (string name in AppendedFiles)
            if (File.Exists(Path.Combine(_folder, name))) _appended[name] = new FileInfo(Path.Combine(_folder, name)).Length;
    }

    public bool Committed { get; private set; }

    /// <summary>From now on the output folder is the run's: nothing is put back.</summary>
    public void Commit()
    {
        if (Committed) return;
        Committed = true;
        int stale = OutputFolder.RemoveStaleTemporaryFiles(_folder);
        if (stale > 0) Log.Info("removed {0} temporary file(s) left by an interrupted run under {1}", stale, _folder);
    }

    public void StepDone(StepReport report) => Commit();

    public void Started(TrainingStart start) { }

    public void CheckpointSaved(long step, string path) { }

    public void ValidationSaved(long step, string path) { }

    public void Message(string level, string text) { }

    public void Dispose()
    {
        if (Committed) return;
        _log.Leave();
        LogManager.Flush();
        try
        {
            Restore();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Warn("could not put the output folder {0} back as it was: {1}", _folder, e.Message);
        }
    }

    private void Restore()
    {
        if (!Directory.Exists(_folder)) return;
        if (!_existed)
        {
            Directory.Delete(_folder, recursive: true);
            return;
        }
        // Deepest first, so a folder is empty by the time it is removed.
        foreach (string entry in Directory.EnumerateFileSystemEntries(_folder, "*", SearchOption.AllDirectories)
                     .OrderByDescending(e => e.Length).ToList())
        {
            if (_entries.Contains(Path.GetRelativePath(_folder, entry))) continue;
            if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
            else File.Delete(entry);
        }
        foreach (var (name, bytes) in _rewritten)
        {
            string path = Path.Combine(_folder, name);
            if (!File.Exists(path) || !File.ReadAllBytes(path).AsSpan().SequenceEqual(bytes)) AtomicFile.WriteBytes(path, bytes);
        }
        foreach (var (name, length) in _appended)
        {
            string path = Path.Combine(_folder, name);
            if (!File.Exists(path) || new FileInfo(path).Length == length) continue;
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            stream.SetLength(length);
        }
    }
}

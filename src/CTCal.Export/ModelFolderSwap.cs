using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using CTCal.Core.Diagnostics;

namespace CTCal.Export;

/// <summary>
/// Replaces a model folder as a whole, and finishes or undoes a replacement whose process was killed. The one owner of
/// the hidden names beside a target folder <c>&lt;parent&gt;/&lt;name&gt;</c>; one export uses one id (32 hex digits):
/// <list type="bullet">
/// <item><c>.&lt;name&gt;.lock-&lt;id&gt;</c>: created first and held open, exclusively, by the exporting process until it is
/// done (an advisory <c>flock</c> on Unix, a handle sharing no access on Windows: the kernel lets go when the process dies,
/// however it dies); it holds the owner's pid and host. Removed last, while still held.</item>
/// <item><c>.&lt;name&gt;.partial-&lt;id&gt;</c>: the new folder, written in place (<see cref="StagingFolder"/>).</item>
/// <item><c>.&lt;name&gt;.old-&lt;id&gt;</c>: the previous folder, moved aside by <see cref="Commit"/> only after the new
/// one is complete, and deleted once the new one is in place.</item>
/// </list>
/// <see cref="Recover"/> treats an export as dead when its lock can be taken and its owner pid is not running on this
/// host (either test alone says "live": a live export's folders are never touched). For a dead one it completes the swap
/// that was under way (the old folder aside and the target missing: the complete staging folder is moved in; without it
/// the old one is restored), then deletes the rest. Folders of exporters older than the lock files (no lock beside them)
/// are recovered the same way, but only when they are older than the recovering process, which they then cannot belong to.
/// </summary>
public sealed partial class ModelFolderSwap : IDisposable
{
    private readonly string _old;
    private readonly string _lockPath;
    private FileStream? _lock;
    private bool _committed;
    private bool _keepLockFile;

    private ModelFolderSwap(string target, string id, FileStream held)
    {
        Target = target;
        string parent = Path.GetDirectoryName(target)!;
        string name = Path.GetFileName(target);
        StagingFolder = Path.Combine(parent, EntryName(name, Partial, id));
        _old = Path.Combine(parent, EntryName(name, Old, id));
        _lockPath = Path.Combine(parent, EntryName(name, Lock, id));
        _lock = held;
    }

    /// <summary>
    /// How a lock file is opened, by its export and by <see cref="Recover"/>: exclusively (on Unix .NET takes a
    /// <c>flock(LOCK_EX)</c> for <see cref="FileShare.None"/>; on Windows the handle shares nothing but deletion, so the
    /// holder can delete the file before letting go).
    /// </summary>
    private static readonly FileShare LockShare = OperatingSystem.IsWindows() ? FileShare.Delete : FileShare.None;

    private const string Partial = "partial";
    private const string Old = "old";
    private const string Lock = "lock";

    /// <summary>The folder this swap replaces (absolute, no trailing separator).</summary>
    public string Target { get; }

    /// <summary>The hidden sibling to write the new folder into.</summary>
    public string StagingFolder { get; }

    /// <summary>
    /// Takes a new export's lock beside <paramref name="target"/> and creates its empty staging folder. Nothing else is
    /// touched: the target stays as it is until <see cref="Commit"/>.
    /// </summary>
    public static ModelFolderSwap Begin(string target)
    {
        target = Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        string parent = Path.GetDirectoryName(target) ?? throw new ArgumentException($"'{target}' has no parent folder", nameof(target));
        string name = Path.GetFileName(target);
        Directory.CreateDirectory(parent);
        for (int attempt = 1; ; attempt++)
        {
            string id = Guid.NewGuid().ToString("N");
            string lockPath = Path.Combine(parent, EntryName(name, Lock, id));
            FileStream held;
            try
            {
                held = new FileStream(lockPath, FileMode.CreateNew, FileAccess.ReadWrite, LockShare);
            }
            catch (IOException) when (attempt < 3 && File.Exists(lockPath))
            {
                // A recovering process opened the new file between its creation and our lock (it finds no owner in it and
                // removes it); take another id.
                continue;
            }

            var swap = new ModelFolderSwap(target, id, held);
            try
            {
                held.Write(Encoding.UTF8.GetBytes(OwnerText()));
                held.Flush(flushToDisk: true);
                Directory.CreateDirectory(swap.StagingFolder);
                return swap;
            }
            catch
            {
                swap.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// Puts the complete staging folder in the target's place: a missing target is one rename; an existing one is moved
    /// aside, the new folder moved in, and the old one deleted (moved back if the second rename fails). Reaches the fault
    /// points <c>export.staged</c>, <c>export.between-renames</c> and <c>export.swapped</c>.
    /// </summary>
    /// <summary>Test seam: runs between the two renames of <see cref="Commit"/> (to make the second one fail on purpose).</summary>
    internal Action? BetweenRenames { get; set; }

    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_lock is null, this);
        if (_committed) throw new InvalidOperationException($"{Target}: the swap was already committed");
        FaultPoints.Reached("export.staged");
        if (!Directory.Exists(Target))
        {
            Directory.Move(StagingFolder, Target);
            _committed = true;
            return;
        }

        Directory.Move(Target, _old);
        FaultPoints.Reached("export.between-renames");
        BetweenRenames?.Invoke();
        try
        {
            Directory.Move(StagingFolder, Target);
        }
        catch
        {
            try
            {
                Directory.Move(_old, Target);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _keepLockFile = true; // the previous folder stays aside under this id; Recover restores it
            }

            throw;
        }

        _committed = true;
        FaultPoints.Reached("export.swapped");
        if (!TryDelete(_old)) _keepLockFile = true; // Recover deletes it later
    }

    /// <summary>Deletes the staging folder unless committed, then removes and releases the lock.</summary>
    public void Dispose()
    {
        var held = Interlocked.Exchange(ref _lock, null);
        if (held is null) return;
        try
        {
            if (!_committed && !TryDelete(StagingFolder)) _keepLockFile = true;
            if (!_keepLockFile)
            {
                // Removed while still held, so no other process can take a lock on a file that is about to disappear.
                try
                {
                    File.Delete(_lockPath);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // a released lock file without folders is removed by the next Recover
                }
            }
        }
        finally
        {
            held.Dispose();
        }
    }

    /// <summary>
    /// Recovers what dead exports left beside the folders of <paramref name="parent"/> (only those of the folder
    /// <paramref name="name"/> when given): see the class summary. Never throws for a single entry it cannot handle; it
    /// says so in the returned notes instead, one per action or problem, for the caller's log.
    /// </summary>
    public static IReadOnlyList<RecoveryNote> Recover(string parent, string? name = null)
    {
        var report = new List<RecoveryNote>();
        if (!Directory.Exists(parent)) return report;
        var groups = new Dictionary<(string Name, string Id), HashSet<string>>();
        foreach (string entry in Directory.EnumerateFileSystemEntries(parent, ".*"))
        {
            var match = EntryPattern().Match(Path.GetFileName(entry));
            if (!match.Success || (name is not null && match.Groups["name"].Value != name)) continue;
            var key = (match.Groups["name"].Value, match.Groups["id"].Value);
            if (!groups.TryGetValue(key, out var kinds)) groups[key] = kinds = [];
            kinds.Add(match.Groups["kind"].Value);
        }

        var busyNames = new HashSet<string>(StringComparer.Ordinal);
        var stale = new List<((string Name, string Id) Key, FileStream? Held)>();
        foreach (var (key, kinds) in groups.OrderBy(g => g.Key.Name, StringComparer.Ordinal).ThenBy(g => g.Key.Id, StringComparer.Ordinal))
        {
            if (kinds.Contains(Lock))
            {
                var held = TryTakeDeadLock(Path.Combine(parent, EntryName(key.Name, Lock, key.Id)));
                if (held is null) busyNames.Add(key.Name);
                else stale.Add((key, held));
            }
            else if (kinds.All(kind => OlderThanThisProcess(Path.Combine(parent, EntryName(key.Name, kind, key.Id)))))
            {
                stale.Add((key, null));
            }
            else
            {
                busyNames.Add(key.Name);
            }
        }

        foreach (var (key, held) in stale)
        {
            using (held)
            {
                // A live export of the same folder may be between its own renames: leave that folder to it entirely.
                if (busyNames.Contains(key.Name)) continue;
                try
                {
                    RecoverDead(parent, key.Name, key.Id, report);
                    if (held is not null) File.Delete(Path.Combine(parent, EntryName(key.Name, Lock, key.Id)));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    report.Add(new RecoveryNote($"could not recover the killed export of '{Path.Combine(parent, key.Name)}' (id {key.Id}): {e.Message}", Failed: true));
                }
            }
        }

        return report;
    }

    private static void RecoverDead(string parent, string name, string id, List<RecoveryNote> report)
    {
        string target = Path.Combine(parent, name);
        string partial = Path.Combine(parent, EntryName(name, Partial, id));
        string old = Path.Combine(parent, EntryName(name, Old, id));
        if (Directory.Exists(old) && !Directory.Exists(target) && !File.Exists(target))
        {
            if (Directory.Exists(partial))
            {
                Directory.Move(partial, target);
                report.Add(new RecoveryNote($"'{target}': completed the replacement a killed export had started (moved in its complete {Path.GetFileName(partial)})"));
            }
            else
            {
                Directory.Move(old, target);
                report.Add(new RecoveryNote($"'{target}': restored the previous model from {Path.GetFileName(old)}"));
            }
        }

        foreach (string leftover in new[] { old, partial })
        {
            if (!Directory.Exists(leftover)) continue;
            Directory.Delete(leftover, recursive: true);
            report.Add(new RecoveryNote($"removed {leftover}, left behind by a killed export"));
        }
    }

    /// <summary>The lock at <paramref name="path"/>, held, when its export is dead; null when it is live (or gone).</summary>
    private static FileStream? TryTakeDeadLock(string path)
    {
        FileStream held;
        try
        {
            held = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, LockShare);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // held by its export (or removed by it just now)
        }

        try
        {
            using var reader = new StreamReader(held, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, 1024, leaveOpen: true);
            if (OwnerIsRunning(reader.ReadToEnd()))
            {
                held.Dispose(); // locking is not effective here (a file system without flock): trust the pid
                return null;
            }

            return held;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            held.Dispose();
            return null;
        }
    }

    private static string OwnerText() => string.Create(
        CultureInfo.InvariantCulture,
        $"pid={Environment.ProcessId}\nhost={Environment.MachineName}\nstarted={DateTime.UtcNow:O}\n");

    /// <summary>Whether the lock text names a process that is running on this host (unreadable or foreign: no).</summary>
    internal static bool OwnerIsRunning(string lockText)
    {
        int? pid = null;
        string? host = null;
        foreach (string line in lockText.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("pid=", StringComparison.Ordinal) && int.TryParse(line[4..], NumberStyles.None, CultureInfo.InvariantCulture, out int p)) pid = p;
            else if (line.StartsWith("host=", StringComparison.Ordinal)) host = line[5..];
        }

        if (pid is not int owner || host != Environment.MachineName) return false;
        try
        {
            using var process = Process.GetProcessById(owner);
            return true;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    private static readonly Lazy<DateTime> ProcessStartUtc = new(() =>
    {
        using var self = Process.GetCurrentProcess();
        return self.StartTime.ToUniversalTime();
    });

    private static bool OlderThanThisProcess(string path) =>
        (Directory.Exists(path) ? Directory.GetLastWriteTimeUtc(path) : File.GetLastWriteTimeUtc(path)) < ProcessStartUtc.Value;

    private static bool TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static string EntryName(string name, string kind, string id) => $".{name}.{kind}-{id}";

    [GeneratedRegex(@"^\.(?<name>.+)\.(?<kind>partial|old|lock)-(?<id>[0-9a-f]{32})$", RegexOptions.CultureInvariant)]
    private static partial Regex EntryPattern();
}

/// <summary>One thing <see cref="ModelFolderSwap.Recover"/> did, or could not do (<paramref name="Failed"/>).</summary>
public sealed record RecoveryNote(string Message, bool Failed = false);

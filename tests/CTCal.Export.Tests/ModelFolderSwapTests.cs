using System.Diagnostics;

namespace CTCal.Export.Tests;

/// <summary>
/// <see cref="ModelFolderSwap"/>: the swap itself, and <see cref="ModelFolderSwap.Recover"/> on hand-made leftovers, with
/// each of its two liveness tests (a held lock, a running owner pid) on its own. The kills themselves, with real
/// <c>ctcal-export</c> processes, are in Plugin.Tests <c>ExportKillTests</c>.
/// </summary>
public sealed class ModelFolderSwapTests : IDisposable
{
    private const string Id = "0123456789abcdef0123456789abcdef";
    private readonly string _root = TestModels.NewRoot();

    public void Dispose() => TestModels.DeleteQuietly(_root);

    private string Target => Path.Combine(_root, "m");

    private string Entry(string kind, string id = Id) => Path.Combine(_root, $".m.{kind}-{id}");

    private string[] Hidden() => Directory.GetFileSystemEntries(_root, ".*").Select(e => Path.GetFileName(e)!).Order(StringComparer.Ordinal).ToArray();

    private static void Folder(string path, string marker)
    {
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "marker.txt"), marker);
    }

    private static string Marker(string path) => File.ReadAllText(Path.Combine(path, "marker.txt"));

    private void LockFile(int pid, string? host = null, string id = Id) =>
        File.WriteAllText(Entry("lock", id), $"pid={pid}\nhost={host ?? Environment.MachineName}\nstarted=2026-01-01T00:00:00.0000000Z\n");

    /// <summary>The pid of a process that has ended (and been reaped).</summary>
    private static int DeadPid()
    {
        var start = OperatingSystem.IsWindows() ? new ProcessStartInfo("cmd", "/c exit 0") : new ProcessStartInfo("sh", "-c true");
        using var process = Process.Start(start)!;
        process.WaitForExit();
        return process.Id;
    }

    [Fact]
    public void Commit_replaces_the_target_and_leaves_nothing_hidden()
    {
        Folder(Target, "previous");
        using (var swap = ModelFolderSwap.Begin(Target))
        {
            Assert.Equal(Path.GetDirectoryName(Target), Path.GetDirectoryName(swap.StagingFolder));
            Assert.StartsWith(".m.partial-", Path.GetFileName(swap.StagingFolder));
            Assert.Equal("previous", Marker(Target));
            Folder(swap.StagingFolder, "new");
            swap.Commit();
            Assert.Equal("new", Marker(Target));
        }

        Assert.Empty(Hidden());
    }

    /// <summary>
    /// The README's "restored if the swap fails": the staged folder vanishes between the two renames (here moved away by the
    /// test seam), so moving it in throws; the previous model is moved back under its name and nothing stays hidden.
    /// </summary>
    [Fact]
    public void A_failed_second_rename_puts_the_previous_model_back()
    {
        Folder(Target, "previous");
        string stolen = Path.Combine(_root, "stolen");
        using (var swap = ModelFolderSwap.Begin(Target))
        {
            Folder(swap.StagingFolder, "new");
            swap.BetweenRenames = () =>
            {
                Assert.False(Directory.Exists(Target)); // the previous model is aside now
                Directory.Move(swap.StagingFolder, stolen);
            };
            Assert.ThrowsAny<IOException>(swap.Commit);
            Assert.Equal("previous", Marker(Target));
        }

        Assert.Equal("previous", Marker(Target));
        Assert.Empty(Hidden());
    }

    [Fact]
    public void An_uncommitted_swap_removes_its_staging_folder_and_lock_and_keeps_the_target()
    {
        Folder(Target, "previous");
        using (var swap = ModelFolderSwap.Begin(Target))
        {
            Folder(swap.StagingFolder, "new");
            Assert.Equal(2, Hidden().Length); // .m.lock-<id> and .m.partial-<id>
        }

        Assert.Empty(Hidden());
        Assert.Equal("previous", Marker(Target));
    }

    [Fact]
    public void A_running_swap_in_this_process_is_left_alone()
    {
        using var swap = ModelFolderSwap.Begin(Target);
        Folder(swap.StagingFolder, "new");
        Assert.Empty(ModelFolderSwap.Recover(_root));
        Assert.Equal("new", Marker(swap.StagingFolder));
        swap.Commit();
        Assert.Equal("new", Marker(Target));
    }

    [Fact]
    public void A_held_lock_is_live_even_when_its_pid_has_ended()
    {
        LockFile(DeadPid());
        Folder(Entry("partial"), "being written");
        using (new FileStream(Entry("lock"), FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            Assert.Empty(ModelFolderSwap.Recover(_root));
            Assert.Equal("being written", Marker(Entry("partial")));
        }

        var note = Assert.Single(ModelFolderSwap.Recover(_root));
        Assert.False(note.Failed);
        Assert.Contains(".m.partial-" + Id, note.Message);
        Assert.Empty(Hidden());
    }

    [Fact]
    public void An_unheld_lock_of_a_running_process_on_this_host_is_live()
    {
        LockFile(Environment.ProcessId);
        Folder(Entry("partial"), "being written");
        Assert.Empty(ModelFolderSwap.Recover(_root));
        Assert.Equal(2, Hidden().Length);

        LockFile(Environment.ProcessId, host: "some-other-host"); // another host's pid says nothing here: the lock decides
        Assert.Single(ModelFolderSwap.Recover(_root));
        Assert.Empty(Hidden());
    }

    [Fact]
    public void A_killed_swap_between_its_renames_is_completed_with_its_staged_folder()
    {
        LockFile(DeadPid());
        Folder(Entry("old"), "previous");
        Folder(Entry("partial"), "new");
        var notes = ModelFolderSwap.Recover(_root);
        Assert.Equal("new", Marker(Target));
        Assert.Empty(Hidden());
        Assert.Contains(notes, n => n.Message.Contains("completed the replacement"));
    }

    [Fact]
    public void A_previous_model_moved_aside_without_a_staged_one_is_restored()
    {
        LockFile(DeadPid());
        Folder(Entry("old"), "previous");
        Assert.Contains(ModelFolderSwap.Recover(_root), n => n.Message.Contains("restored the previous model"));
        Assert.Equal("previous", Marker(Target));
        Assert.Empty(Hidden());
    }

    [Fact]
    public void After_a_finished_rename_only_the_leftovers_go()
    {
        Folder(Target, "new");
        LockFile(DeadPid());
        Folder(Entry("old"), "previous");
        ModelFolderSwap.Recover(_root);
        Assert.Equal("new", Marker(Target));
        Assert.Empty(Hidden());

        // a lock whose export died before making its staging folder
        LockFile(DeadPid(), id: "fedcba9876543210fedcba9876543210");
        Assert.Empty(ModelFolderSwap.Recover(_root));
        Assert.Empty(Hidden());
    }

    [Fact]
    public void A_running_export_of_the_same_folder_keeps_dead_ones_waiting()
    {
        using var live = ModelFolderSwap.Begin(Target);
        LockFile(DeadPid());
        Folder(Entry("old"), "previous");
        Assert.Empty(ModelFolderSwap.Recover(_root)); // the live one may be between its own renames: nothing is moved
        Assert.True(Directory.Exists(Entry("old")));
        live.Dispose();
        ModelFolderSwap.Recover(_root);
        Assert.Equal("previous", Marker(Target));
        Assert.Empty(Hidden());
    }

    [Fact]
    public void Recover_with_a_name_touches_only_that_folders_leftovers_and_nothing_that_is_not_its_own()
    {
        LockFile(DeadPid());
        Folder(Entry("partial"), "m");
        File.WriteAllText(Path.Combine(_root, $".n.lock-{Id}"), $"pid={DeadPid()}\nhost={Environment.MachineName}\n");
        Folder(Path.Combine(_root, $".n.partial-{Id}"), "n");
        Folder(Path.Combine(_root, ".m.partial-not-an-id"), "foreign");
        Folder(Path.Combine(_root, ".cache"), "foreign");

        ModelFolderSwap.Recover(_root, "n");
        Assert.Equal([".cache", ".m.lock-" + Id, ".m.partial-" + Id, ".m.partial-not-an-id"], Hidden());
        ModelFolderSwap.Recover(_root);
        Assert.Equal([".cache", ".m.partial-not-an-id"], Hidden());
    }

    [Fact]
    public void Lockless_leftovers_of_older_exporters_go_only_when_older_than_this_process()
    {
        // What exporters before the lock files left: an old model moved aside and a staging folder, each its own id.
        Folder(Entry("old"), "previous");
        Folder(Entry("partial", "fedcba9876543210fedcba9876543210"), "half");
        Assert.Empty(ModelFolderSwap.Recover(_root)); // just made: could belong to such an exporter running now
        Assert.Equal(2, Hidden().Length);

        var longAgo = DateTime.UtcNow.AddDays(-1);
        using (var self = Process.GetCurrentProcess()) Assert.True(longAgo < self.StartTime.ToUniversalTime());
        Directory.SetLastWriteTimeUtc(Entry("old"), longAgo);
        Directory.SetLastWriteTimeUtc(Entry("partial", "fedcba9876543210fedcba9876543210"), longAgo);
        ModelFolderSwap.Recover(_root);
        Assert.Equal("previous", Marker(Target));
        Assert.Empty(Hidden());
    }
}

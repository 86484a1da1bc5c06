using System.Diagnostics;
using System.Text.Json;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Training;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>
/// A read-only output folder and a checkpoint write that fails (a folder sits where the file must go) end the run with
/// exit code 4 and one message naming the folder or file, never a stack trace, and leave earlier checkpoints intact.
/// </summary>
public sealed class OutputFolderFaultTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-outfault");
    private readonly StringWriter _out = new();
    private readonly StringWriter _err = new();
    private readonly List<string> _readOnly = [];

    public void Dispose()
    {
        foreach (string folder in _readOnly) MakeWritable(folder);
        Directory.Delete(_dir, recursive: true);
    }

    private int Train(string data, string outFolder, params string[] extra) =>
        new TrainerCli(_ => new ToyDiffusionModel(), _out, _err).Run(
            ["train", "--model", "toy", "--data", data, "--out", outFolder, "--resolution", "8", "--batch-size", "2", "--lora-rank", "2",
             "--layers", "all", "--progress", "json", .. extra]);

    private JsonElement LastEvent() => JsonDocument.Parse(_out.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1]).RootElement.Clone();

    private void AssertCleanError(string path)
    {
        string stderr = _err.ToString();
        Assert.Contains(path, stderr);
        Assert.DoesNotContain("   at ", stderr); // no stack trace
        var error = LastEvent();
        Assert.Equal("error", error.GetProperty("event").GetString());
        Assert.Equal("output_not_writable", error.GetProperty("kind").GetString());
        Assert.Equal(ExitCodes.OutputNotWritable, error.GetProperty("exit_code").GetInt32());
        Assert.Contains(path, error.GetProperty("message").GetString());
    }

    private static void AssertLoads(string checkpoint)
    {
        var tensors = TensorFile.Load(checkpoint, out var metadata);
        Assert.Contains("ctcal.state", metadata.Keys);
        Assert.Contains("rng.torch", tensors.Keys);
        foreach (var t in tensors.Values) t.Dispose();
    }

    /// <summary>
    /// Makes <paramref name="folder"/> unwritable: <c>chmod 555</c>, and as root (which chmod does not stop) the immutable
    /// attribute (<c>chattr +i</c>). Returns false when neither works here (then the caller cannot test this).
    /// </summary>
    private bool MakeReadOnly(string folder)
    {
        if (OperatingSystem.IsWindows()) return false;
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        _readOnly.Add(folder);
        if (CanWrite(folder)) RunChattr("+i", folder);
        return !CanWrite(folder);
    }

    private static void MakeWritable(string folder)
    {
        if (OperatingSystem.IsWindows()) return;
        RunChattr("-i", folder);
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    private static void RunChattr(string flag, string folder)
    {
        try
        {
            var start = new ProcessStartInfo("chattr") { RedirectStandardError = true, RedirectStandardOutput = true };
            start.ArgumentList.Add(flag);
            start.ArgumentList.Add(folder);
            using var process = Process.Start(start);
            process?.WaitForExit(10_000);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // chattr is not installed.
        }
    }

    private static bool CanWrite(string folder)
    {
        string probe = Path.Combine(folder, "probe");
        try
        {
            File.WriteAllText(probe, "x");
            File.Delete(probe);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    [SkippableFact]
    public void AReadOnlyOutputFolderFailsAtStartNamingIt()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string outFolder = Path.Combine(_dir, "out");
        Directory.CreateDirectory(outFolder);
        Skip.IfNot(MakeReadOnly(outFolder), $"cannot make a read-only folder here (user {Environment.UserName}: chmod has no effect and chattr +i is unavailable)");
        Assert.Equal(ExitCodes.OutputNotWritable, Train(data, outFolder, "--steps", "2"));
        AssertCleanError(outFolder);
        Assert.Empty(Directory.GetFileSystemEntries(outFolder));
    }

    [SkippableFact]
    public void AReadOnlyCheckpointFolderFailsTheResumeAndKeepsTheCheckpoints()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string outFolder = Path.Combine(_dir, "out");
        Assert.Equal(0, Train(data, outFolder, "--steps", "2", "--save-every", "1"));
        string checkpoints = Path.Combine(outFolder, "checkpoints");
        byte[] before = File.ReadAllBytes(Path.Combine(checkpoints, "step-0000002.safetensors"));
        Skip.IfNot(MakeReadOnly(checkpoints), "cannot make a read-only folder here (chmod has no effect and chattr +i is unavailable)");
        _out.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.OutputNotWritable, Train(data, outFolder, "--steps", "4", "--save-every", "1", "--resume", "latest"));
        AssertCleanError(checkpoints);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(checkpoints, "step-0000002.safetensors")));
        AssertLoads(Path.Combine(checkpoints, "step-0000002.safetensors"));
    }

    [Fact]
    public void AFailedCheckpointWriteStopsTheRunNamingTheFileAndKeepsTheEarlierCheckpoint()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string outFolder = Path.Combine(_dir, "out");
        string checkpoints = Path.Combine(outFolder, "checkpoints");
        string blocked = Path.Combine(checkpoints, "step-0000002.safetensors");
        Directory.CreateDirectory(blocked); // the rename onto the final name fails with an IOException, as a full disk fails the write
        Assert.Equal(ExitCodes.OutputNotWritable, Train(data, outFolder, "--steps", "3", "--save-every", "1"));
        AssertCleanError(blocked);
        AssertLoads(Path.Combine(checkpoints, "step-0000001.safetensors"));
        Assert.Equal(Path.Combine(checkpoints, "step-0000001.safetensors"), TrainingRun.LatestCheckpoint(outFolder));
        Assert.Empty(Directory.GetFiles(checkpoints, ".*.tmp")); // the writer removed its temporary file
        Assert.False(File.Exists(Path.Combine(outFolder, LoraFile.DefaultName)));

        // Once the obstacle is gone, the run resumes from the intact checkpoint.
        Directory.Delete(blocked);
        _out.GetStringBuilder().Clear();
        Assert.Equal(0, Train(data, outFolder, "--steps", "3", "--save-every", "1", "--resume", "latest"));
        Assert.True(File.Exists(Path.Combine(outFolder, LoraFile.DefaultName)));
    }

    [Fact]
    public void AnOutputPathThatIsAFileFailsNamingIt()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string file = Path.Combine(_dir, "not-a-folder");
        File.WriteAllText(file, "x");
        Assert.Equal(ExitCodes.OutputNotWritable, Train(data, file, "--steps", "1"));
        AssertCleanError(file);
    }
}

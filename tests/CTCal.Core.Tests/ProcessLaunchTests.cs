using System.ComponentModel;
using System.Diagnostics;
using CTCal.Core.Diagnostics;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// A freshly written executable that is still open for writing somewhere (here: this test's own writer; in the tests'
/// processes, a child forked while a stand-in trainer was being written) is refused by the kernel as busy. Plain
/// <see cref="Process.Start(ProcessStartInfo)"/> fails; <see cref="ProcessLaunch.Start"/> waits it out.
/// </summary>
public sealed class ProcessLaunchTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-launch");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_busy_executable_starts_once_its_writer_has_closed_it()
    {
        if (OperatingSystem.IsWindows()) return; // Windows has no busy-text refusal; nothing to wait for there

        string script = Path.Combine(_dir, "busy.sh");
        var writer = new FileStream(script, FileMode.CreateNew, FileAccess.Write);
        writer.Write("#!/bin/sh\necho started\n"u8);
        writer.Flush();
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        var refused = Assert.Throws<Win32Exception>(() => Process.Start(new ProcessStartInfo(script) { UseShellExecute = false })?.Dispose());
        Assert.True(ProcessLaunch.IsBusy(refused), refused.Message);

        var attempts = new List<int>();
        using var process = ProcessLaunch.Start(new ProcessStartInfo(script) { UseShellExecute = false, RedirectStandardOutput = true }, attempt =>
        {
            attempts.Add(attempt);
            writer.Dispose(); // the busy state ends here; the next attempt starts it
        });
        Assert.Equal("started", process.StandardOutput.ReadLine());
        process.WaitForExit();
        Assert.Equal([1], attempts);
    }

    [Fact]
    public void Other_failures_are_thrown_at_once()
    {
        int calls = 0;
        Assert.Throws<Win32Exception>(() => ProcessLaunch.Start(new ProcessStartInfo(Path.Combine(_dir, "missing")) { UseShellExecute = false }, _ => calls++));
        Assert.Equal(0, calls);
    }
}

using System.ComponentModel;
using System.Diagnostics;

namespace CTCal.Core.Diagnostics;

/// <summary>
/// Starts a child process, retrying while Linux or macOS refuses the executable as busy (ETXTBSY). That happens when the
/// file was written moments ago by this process (a trainer copied into place, a test's stand-in script) and another
/// thread forked a child while the file was still open for writing: the child holds the descriptor until its own exec,
/// and the kernel refuses to run a file open for writing meanwhile. The window is milliseconds, so a few short waits
/// end it; any other failure is thrown at once, as <see cref="Process.Start(ProcessStartInfo)"/> throws it.
/// </summary>
public static class ProcessLaunch
{
    /// <summary>errno ETXTBSY on Linux and macOS.</summary>
    public const int TextFileBusy = 26;

    /// <summary>Attempts before the busy error is thrown.</summary>
    public const int Attempts = 20;

    /// <summary>Starts <paramref name="start"/>; the caller owns (disposes) the returned process.</summary>
    /// <param name="start">What to run.</param>
    /// <param name="busy">Called with the attempt number after each busy refusal, before the wait (tests end the busy state there).</param>
    /// <exception cref="Win32Exception">The executable could not be started (still busy after <see cref="Attempts"/> tries, or any other reason).</exception>
    /// <exception cref="InvalidOperationException">No process was started.</exception>
    public static Process Start(ProcessStartInfo start, Action<int>? busy = null)
    {
        ArgumentNullException.ThrowIfNull(start);
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
            }
            catch (Win32Exception e) when (IsBusy(e) && attempt < Attempts)
            {
                busy?.Invoke(attempt);
                Thread.Sleep(10 * attempt);
            }
        }
    }

    /// <summary>Whether <paramref name="e"/> is the busy-executable refusal (never on Windows, whose codes differ).</summary>
    public static bool IsBusy(Win32Exception e) => !OperatingSystem.IsWindows() && e.NativeErrorCode == TextFileBusy;
}

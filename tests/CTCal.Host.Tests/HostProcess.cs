using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace CTCal.Tests;

/// <summary>
/// Starts the built <c>ctcal-host</c> (the <c>ctcal-host.dll</c> copied into this test project's output) as a separate process
/// through <c>dotnet</c>, arguments as a list (no shell). stdout and stderr are collected together, line by line.
/// </summary>
internal sealed class HostProcess : IDisposable
{
    /// <summary>Guards against a hang only; nothing is asserted about how long anything takes.</summary>
    private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(3);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly Thread[] _readers;
    private int _openStreams = 2;

    public HostProcess(string workingDirectory, IEnumerable<string> arguments)
    {
        var start = DotnetApp.StartInfo("ctcal-host.dll", workingDirectory, arguments);
        _process = Process.Start(start) ?? throw new InvalidOperationException("ctcal-host did not start");
        _readers = [Reader(_process.StandardOutput, "stdout"), Reader(_process.StandardError, "stderr")];
    }

    private Thread Reader(StreamReader stream, string name)
    {
        var thread = new Thread(() =>
        {
            string? line;
            while ((line = stream.ReadLine()) is not null)
            {
                lock (_output)
                {
                    _output.AppendLine(line);
                    Monitor.PulseAll(_output);
                }
            }
            lock (_output)
            {
                _openStreams--;
                Monitor.PulseAll(_output);
            }
        }) { IsBackground = true, Name = $"ctcal-host {name}" };
        thread.Start();
        return thread;
    }

    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    /// <summary>Waits until a line containing <paramref name="text"/> was written (true) or the process closed its output (false).</summary>
    public bool WaitForLine(string text)
    {
        var deadline = DateTime.UtcNow + HangGuard;
        lock (_output)
        {
            while (true)
            {
                if (_output.ToString().Contains(text, StringComparison.Ordinal)) return true;
                if (_openStreams == 0) return false;
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    Kill();
                    throw new TimeoutException($"ctcal-host wrote no '{text}' within {HangGuard}; output:\n{_output}");
                }
                Monitor.Wait(_output, left);
            }
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    /// <summary>Sends SIGTERM (15), as a service manager or <c>kill</c> does.</summary>
    public void Terminate()
    {
        const int sigterm = 15;
        if (kill(_process.Id, sigterm) != 0) throw new InvalidOperationException($"kill({_process.Id}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public int WaitForExit()
    {
        if (!_process.WaitForExit(HangGuard))
        {
            Kill();
            _process.WaitForExit();
            throw new TimeoutException($"ctcal-host did not exit within {HangGuard}; output:\n{Output}");
        }
        _process.WaitForExit();
        foreach (var reader in _readers) reader.Join();
        return _process.ExitCode;
    }

    private void Kill()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }
}

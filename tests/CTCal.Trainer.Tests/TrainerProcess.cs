using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using CTCal.Tests;

namespace CTCal.Trainer.Tests;

/// <summary>
/// Starts the built <c>ctcal-train</c> (the <c>ctcal-train.dll</c> copied into this test project's output) as a separate
/// process through <c>dotnet</c>, with arguments passed as a list (no shell). stdout is read line by line and each JSON
/// event handed to <see cref="EventReceived"/>; stderr is collected.
/// </summary>
internal sealed class TrainerProcess : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _stderr = new();
    private readonly Thread _stdoutReader;
    private readonly Thread _stderrReader;
    private bool _stderrClosed;

    /// <summary>Called on the stdout reader thread for every JSON line: (event name, the parsed object).</summary>
    public event Action<string, JsonElement>? EventReceived;

    public List<string> Lines { get; } = [];

    /// <param name="environment">variables set (or, with a null value, removed) in the child's environment only.</param>
    public TrainerProcess(IEnumerable<string> arguments, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var start = DotnetApp.StartInfo("ctcal-train.dll", AppContext.BaseDirectory, arguments, environment);
        _process = Process.Start(start) ?? throw new InvalidOperationException("ctcal-train did not start");
        _stdoutReader = new Thread(ReadStdout) { IsBackground = true, Name = "ctcal-train stdout" };
        _stderrReader = new Thread(() =>
        {
            string? line;
            while ((line = _process.StandardError.ReadLine()) is not null)
            {
                lock (_stderr)
                {
                    _stderr.AppendLine(line);
                    Monitor.PulseAll(_stderr);
                }
            }
            lock (_stderr)
            {
                _stderrClosed = true;
                Monitor.PulseAll(_stderr);
            }
        }) { IsBackground = true, Name = "ctcal-train stderr" };
        _stdoutReader.Start();
        _stderrReader.Start();
    }

    private void ReadStdout()
    {
        string? line;
        while ((line = _process.StandardOutput.ReadLine()) is not null)
        {
            lock (Lines) Lines.Add(line);
            JsonElement root;
            try
            {
                using var document = JsonDocument.Parse(line);
                root = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                continue; // a line cut by the kill
            }
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("event", out var name))
                EventReceived?.Invoke(name.GetString() ?? "", root);
        }
    }

    public bool HasExited => _process.HasExited;

    /// <summary>SIGKILL to the trainer and everything it started; nothing of its own shutdown code runs.</summary>
    public void Kill()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // It exited on its own just before.
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    /// <summary>Sends SIGTERM (15) to the trainer, as a service manager or <c>kill</c> does.</summary>
    public void Terminate()
    {
        const int sigterm = 15;
        if (kill(_process.Id, sigterm) != 0) throw new InvalidOperationException($"kill({_process.Id}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>
    /// Waits until stderr has a line containing <paramref name="text"/> (true), or stderr closed without one (false). The
    /// <paramref name="timeout"/> only guards against a hang: it throws, killing the trainer.
    /// </summary>
    public bool WaitForStderr(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_stderr)
        {
            while (true)
            {
                if (_stderr.ToString().Contains(text, StringComparison.Ordinal)) return true;
                if (_stderrClosed) return false;
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    Kill();
                    throw new TimeoutException($"ctcal-train wrote no '{text}' within {timeout}; stderr:\n{_stderr}");
                }
                Monitor.Wait(_stderr, left);
            }
        }
    }

    /// <summary>Waits for the exit (killing the process tree after <paramref name="timeout"/>) and returns the exit code.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            Kill();
            _process.WaitForExit();
            throw new TimeoutException($"ctcal-train did not exit within {timeout}; stderr:\n{Stderr}");
        }
        _process.WaitForExit(); // drains the redirected streams
        _stdoutReader.Join();
        _stderrReader.Join();
        return _process.ExitCode;
    }

    public string Stderr
    {
        get
        {
            lock (_stderr) return _stderr.ToString();
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }
}

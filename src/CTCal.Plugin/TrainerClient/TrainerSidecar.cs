using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Core.Diagnostics;

namespace CTCal.Plugin.TrainerClient;

/// <summary>
/// Runs the trainer as a separate process (never through a shell: arguments go through
/// <see cref="ProcessStartInfo.ArgumentList"/>), reads one JSON event per stdout line, relays them as
/// <see cref="OperationProgress"/>, and kills the whole process tree on cancellation. The host process never loads
/// the training stack.
/// </summary>
internal sealed class TrainerSidecar
{
    private const int StderrLinesKept = 20;

    private readonly string _executable;
    private readonly ILogSink _log;

    public TrainerSidecar(string executable, ILogSink log)
    {
        _executable = executable;
        _log = log;
    }

    /// <summary>
    /// Runs the trainer to its end and returns its <c>done</c> event (with the <c>start</c> event's method). Throws <see cref="FineTuneException"/> when it
    /// reports <c>error</c> (the event's kind in the exception's <see cref="Exception.Data"/>, <see cref="TrainerErrorKinds"/>) or exits without <c>done</c>, <see cref="OperationCanceledException"/> when cancelled
    /// (the process tree is killed first).
    /// </summary>
    public async Task<TrainerEvent> RunAsync(
        IReadOnlyList<string> arguments,
        IProgress<OperationProgress>? progress,
        CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var start = new ProcessStartInfo(_executable)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            CreateNoWindow = true,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        Process started;
        try
        {
            started = ProcessLaunch.Start(start);
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            throw new FineTuneException($"Could not start trainer {_executable}: {ex.Message}", ex);
        }

        using var process = started;

        _log.Log(LogSeverity.Information, $"Trainer started (pid {process.Id}): {_executable} {string.Join(' ', arguments)}");

        var stderrTail = new Queue<string>();
        var stderrTask = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync().ConfigureAwait(false) is { } line)
            {
                _log.Log(LogSeverity.Debug, $"trainer: {line}");
                lock (stderrTail)
                {
                    stderrTail.Enqueue(line);
                    if (stderrTail.Count > StderrLinesKept)
                    {
                        stderrTail.Dequeue();
                    }
                }
            }
        }, CancellationToken.None);

        TrainerEvent? done = null;
        TrainerEvent? error = null;
        string? method = null; // from the start event: what the trainer says it ran, carried on the returned done event
        long? totalSteps = null;
        bool cancelled = false;
        using (cancellationToken.Register(() =>
        {
            cancelled = true;
            Kill(process);
        }))
        {
            while (await process.StandardOutput.ReadLineAsync().ConfigureAwait(false) is { } line)
            {
                var evt = TrainerEvent.TryParse(line, out string? problem);
                if (evt is null)
                {
                    _log.Log(LogSeverity.Debug, $"trainer stdout ignored ({problem}): {line}");
                    continue;
                }

                totalSteps = evt.TotalSteps ?? totalSteps;
                _log.Log(evt.Kind == "error" ? LogSeverity.Error : LogSeverity.Information, $"trainer: {evt}");
                progress?.Report(new OperationProgress(
                    evt.Kind, evt.Step ?? 0, totalSteps ?? 0, evt.Message ?? evt.Path, evt.Metrics));
                if (evt.Kind == "start")
                {
                    method = evt.Method ?? method;
                }
                else if (evt.Kind == "done")
                {
                    done = evt with { Method = evt.Method ?? method };
                }
                else if (evt.Kind == "error")
                {
                    error = evt;
                }
            }

            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            await stderrTask.ConfigureAwait(false);
        }

        if (cancelled)
        {
            _log.Log(LogSeverity.Warning, "Trainer cancelled; process tree killed");
            throw new OperationCanceledException("Fine-tuning was cancelled", cancellationToken);
        }

        string tail;
        lock (stderrTail)
        {
            tail = string.Join(Environment.NewLine, stderrTail);
        }

        if (error is not null)
        {
            var failure = new FineTuneException($"Trainer reported an error: {error.Message ?? "(no message)"}");
            if (error.ErrorKind is not null)
            {
                failure.Data[TrainerErrorKinds.DataKey] = error.ErrorKind;
            }

            throw failure;
        }

        if (process.ExitCode != 0)
        {
            throw new FineTuneException($"Trainer exited with code {process.ExitCode}{(tail.Length > 0 ? ":" + Environment.NewLine + tail : "")}");
        }

        if (done is null)
        {
            throw new FineTuneException("Trainer exited without a 'done' event");
        }

        if (done.Cancelled)
        {
            throw new FineTuneException($"Trainer stopped early (cancelled at step {done.Step}); its last checkpoint is kept but nothing was exported");
        }

        return done;
    }

    /// <summary>Finds <paramref name="name"/> (plus .exe on Windows) on PATH, or null.</summary>
    public static string? FindOnPath(string name)
    {
        string file = OperatingSystem.IsWindows() && !name.EndsWith(".exe", StringComparison.OrdinalIgnoreCase) ? name + ".exe" : name;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, file);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    private void Kill(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            _log.Log(LogSeverity.Debug, "Trainer already gone when cancelling", ex);
        }
    }
}

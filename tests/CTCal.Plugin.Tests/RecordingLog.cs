using System.Collections.Concurrent;
using CTCal.Contracts;

namespace CTCal.Tests;

/// <summary>An <see cref="ILogSink"/> that keeps every message for assertions.</summary>
internal sealed class RecordingLog : ILogSink
{
    public ConcurrentQueue<(LogSeverity Severity, string Message)> Entries { get; } = new();

    public bool IsEnabled(LogSeverity severity) => true;

    public void Log(LogSeverity severity, string message, Exception? exception = null) => Entries.Enqueue((severity, message));

    public IEnumerable<string> Warnings => Entries.Where(e => e.Severity == LogSeverity.Warning).Select(e => e.Message);
}

namespace CTCal.Contracts;

/// <summary>Severity of a message a plugin sends to its host.</summary>
public enum LogSeverity
{
    Trace,
    Debug,
    Information,
    Warning,
    Error,
}

/// <summary>
/// Where a plugin writes its log. The host supplies one per plugin (through <see cref="IPluginContext.Log"/>) and
/// forwards it to whatever logging framework it uses, so a plugin never forces one on the host.
/// Implementations must be safe to call from several threads.
/// </summary>
public interface ILogSink
{
    /// <summary>Whether messages of <paramref name="severity"/> are recorded (lets callers skip formatting).</summary>
    bool IsEnabled(LogSeverity severity);

    /// <summary>Records one message, with the exception that caused it if any.</summary>
    void Log(LogSeverity severity, string message, Exception? exception = null);
}

/// <summary>An <see cref="ILogSink"/> that drops everything.</summary>
public sealed class NullLogSink : ILogSink
{
    /// <summary>The shared instance.</summary>
    public static readonly NullLogSink Instance = new();

    private NullLogSink()
    {
    }

    /// <inheritdoc />
    public bool IsEnabled(LogSeverity severity) => false;

    /// <inheritdoc />
    public void Log(LogSeverity severity, string message, Exception? exception = null)
    {
    }
}

using CTCal.Contracts;
using NLog;

namespace CTCal.Hosting;

/// <summary>Forwards a plugin's (or the host's) <see cref="ILogSink"/> messages to an NLog logger.</summary>
public sealed class NLogSink : ILogSink
{
    private readonly Logger _logger;

    public NLogSink(string loggerName)
    {
        _logger = LogManager.GetLogger(loggerName);
    }

    public bool IsEnabled(LogSeverity severity) => _logger.IsEnabled(Map(severity));

    public void Log(LogSeverity severity, string message, Exception? exception = null) =>
        _logger.Log(Map(severity), exception, "{0}", message);

    private static LogLevel Map(LogSeverity severity) => severity switch
    {
        LogSeverity.Trace => LogLevel.Trace,
        LogSeverity.Debug => LogLevel.Debug,
        LogSeverity.Information => LogLevel.Info,
        LogSeverity.Warning => LogLevel.Warn,
        _ => LogLevel.Error,
    };
}

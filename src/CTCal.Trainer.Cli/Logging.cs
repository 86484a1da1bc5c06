using NLog;

namespace CTCal.Trainer.Cli;

/// <summary>NLog setup: nlog.config beside the executable (console + rolling file); the file log follows the run's output folder.</summary>
public static class Logging
{
    /// <summary>Sends the file log to <c>{folder}/train.log</c> from now on.</summary>
    public static void UseOutputFolder(string folder) => GlobalDiagnosticsContext.Set("logDir", folder);

    /// <summary>Sends the file log back to <c>logs/</c> beside the executable.</summary>
    public static void UseDefaultFolder() => GlobalDiagnosticsContext.Remove("logDir");
}

namespace CTCal.Trainer.Cli;

/// <summary>Process exit codes of <c>ctcal-train</c> (documented in docs/trainer.md).</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>An unexpected error (I/O, a model that fails to run, ...).</summary>
    public const int Error = 1;
    /// <summary>Bad arguments, configuration, model folder or dataset.</summary>
    public const int BadInput = 2;
    /// <summary>Training diverged: too many non-finite steps in a row.</summary>
    public const int Diverged = 3;
    /// <summary>The output folder or a file in it cannot be written (read-only, full, a folder in the way); earlier checkpoints are intact.</summary>
    public const int OutputNotWritable = 4;
    /// <summary>Cancelled (Ctrl+C / SIGINT / SIGTERM); a checkpoint of the last finished step was written.</summary>
    public const int Cancelled = 130;
}

/// <summary>A user error found while reading options or the config file (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);

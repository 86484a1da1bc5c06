using NLog;

namespace CTCal.Trainer.Cli;

/// <summary>
/// NLog setup: nlog.config beside the executable (console + rolling file). The file log follows the run's output folder
/// through a <see cref="LogFolder"/>, which scopes the folder to the calling flow (NLog's <see cref="ScopeContext"/>), so
/// two runs in one process (the tests run the command in parallel) each write their own <c>train.log</c>. Lines logged
/// outside a run go to <c>logs/</c> beside the executable.
/// </summary>
public static class Logging
{
    /// <summary>The scope property nlog.config reads for the file target's folder.</summary>
    public const string Property = "logDir";
}

/// <summary>
/// Where this flow's file log goes: <see cref="Use"/> sends it to <c>{folder}/train.log</c>, <see cref="Leave"/> (and
/// <see cref="Dispose"/>) back to the default folder. Owned by the verb that runs; used from the flow that created it.
/// </summary>
public sealed class LogFolder : IDisposable
{
    private IDisposable? _scope;

    public void Use(string folder)
    {
        Leave();
        _scope = ScopeContext.PushProperty(Logging.Property, Path.GetFullPath(folder));
    }

    public void Leave()
    {
        _scope?.Dispose();
        _scope = null;
    }

    public void Dispose() => Leave();
}

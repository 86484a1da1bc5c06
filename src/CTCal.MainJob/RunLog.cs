using NLog;

namespace CTCal.MainJob;

/// <summary>
/// Where a run's <c>main.log</c> goes (nlog.config's file target). <see cref="To"/> scopes the folder to the calling
/// async flow (NLog's <see cref="ScopeContext"/>), so log lines of work started inside the run (awaits, Task.Run,
/// parallel fine-tunes) land in its folder and nothing written after the scope ends does. Two runs in one process each
/// keep their own log, and a finished run's folder can be deleted while other work goes on logging. Lines logged
/// outside any run go to the process-wide <c>runDir</c> variable (set once by the command line) or ./logs.
/// </summary>
public static class RunLog
{
    /// <summary>The scope property nlog.config reads for the file target's folder.</summary>
    public const string Property = "runDir";

    /// <summary>Sends this flow's log lines to <paramref name="folder"/>/main.log until the returned scope is disposed.</summary>
    public static IDisposable To(string folder) => ScopeContext.PushProperty(Property, Path.GetFullPath(folder));

    /// <summary>
    /// The command line's process-wide fallback: lines logged outside any <see cref="To"/> scope (before the run starts,
    /// from threads the run did not start) go to <paramref name="folder"/> too. Only for a process that runs one job.
    /// </summary>
    public static void SetProcessFolder(string folder)
    {
        if (LogManager.Configuration is { } config)
        {
            config.Variables[Property] = Path.GetFullPath(folder);
        }
    }
}

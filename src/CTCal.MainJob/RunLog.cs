using NLog;

namespace CTCal.MainJob;

/// <summary>
/// Where a run's <c>main.log</c> goes (nlog.config's file target). <see cref="To"/> scopes the folder to the calling
/// async flow (NLog's <see cref="ScopeContext"/>), so log lines of work started inside the run (awaits, Task.Run,
/// parallel fine-tunes) land in its folder and nothing written after the scope ends does. Two runs in one process each
/// keep their own log, and a finished run's folder can be deleted while other work goes on logging. A command's lines
/// around its run (its error, after the run's scope ended) go to the folder its <see cref="ForCommand"/> scope names;
/// lines logged outside any scope go to the process-wide <c>runDir</c> variable (CTCAL_LOG_DIR, else ./logs).
/// </summary>
public static class RunLog
{
    /// <summary>The scope property nlog.config reads for the file target's folder.</summary>
    public const string Property = "runDir";

    /// <summary>Sends this flow's log lines to <paramref name="folder"/>/main.log until the returned scope is disposed.</summary>
    public static IDisposable To(string folder) => ScopeContext.PushProperty(Property, Path.GetFullPath(folder));

    /// <summary>
    /// Opens a command's log scope whose folder is not known yet: lines of this flow go to the process-wide fallback (./logs)
    /// until <see cref="SetCommandFolder"/> names the run's folder, and to that folder from then on, the command's own error
    /// lines after its run has ended included. Per flow, so commands run in one process (the tests) keep their lines apart.
    /// </summary>
    public static IDisposable ForCommand() => ScopeContext.PushProperty(Property, new CommandFolder());

    /// <summary>Names the folder of the enclosing <see cref="ForCommand"/> scope; outside one it does nothing.</summary>
    public static void SetCommandFolder(string folder)
    {
        if (ScopeContext.TryGetProperty(Property, out object? value) && value is CommandFolder command)
        {
            command.Folder = Path.GetFullPath(folder);
        }
    }

    /// <summary>The folder a command's lines go to, rendered by nlog.config's <c>${scopeproperty}</c> ("" until set, which
    /// falls back to the process-wide variable).</summary>
    private sealed class CommandFolder
    {
        private volatile string _folder = "";

        public string Folder
        {
            get => _folder;
            set => _folder = value;
        }

        public override string ToString() => _folder;
    }
}

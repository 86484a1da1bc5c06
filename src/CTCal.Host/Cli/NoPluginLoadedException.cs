namespace CTCal.Host.Cli;

/// <summary>No enabled plugin of plugins.json could be loaded, so no verb can run (exit code 1).</summary>
internal sealed class NoPluginLoadedException(string file)
    : Exception($"no plugin of {file} could be loaded (see the warnings above, or 'ctcal-host plugins')");

namespace CTCal.Host.Cli;

/// <summary>A plugin threw something unexpected from a call; names the plugin and the call (exit code 3).</summary>
internal sealed class PluginCallException(string pluginId, string call, Exception inner)
    : Exception($"plugin '{pluginId}' failed in {call}: {inner.GetType().Name}: {inner.Message}", inner)
{
    public string PluginId { get; } = pluginId;
}

using System.Text.Json;

namespace CTCal.Contracts;

/// <summary>
/// What a host tells a plugin about itself. The host exports one instance per plugin into that plugin's composition
/// container; a plugin part receives it with an <c>[ImportingConstructor]</c> parameter.
/// </summary>
public interface IPluginContext
{
    /// <summary>The plugin's id from the host's plugin list (<c>plugins.json</c> <c>id</c>).</summary>
    string PluginId { get; }

    /// <summary>The folder the plugin assembly was loaded from.</summary>
    string PluginDirectory { get; }

    /// <summary>
    /// The folder that relative paths in <see cref="Settings"/> resolve against (the folder of <c>plugins.json</c>).
    /// Paths in settings must stay inside it.
    /// </summary>
    string BaseDirectory { get; }

    /// <summary>
    /// The plugin's own <c>settings</c> object from <c>plugins.json</c> (an empty object when absent). The element is
    /// detached from any document, so it stays valid for the plugin's lifetime.
    /// </summary>
    JsonElement Settings { get; }

    /// <summary>The file the settings came from, for error messages.</summary>
    string SettingsSource { get; }

    /// <summary>Where the plugin logs.</summary>
    ILogSink Log { get; }
}

using CTCal.Core.Models;

namespace CTCal.Plugin.Hosting;

/// <summary>Resolves a path from the plugin's settings inside the settings file's folder (see <see cref="PathGuard"/>).</summary>
internal static class PluginPaths
{
    /// <param name="what">Names the file and field in error messages.</param>
    /// <exception cref="PluginSettingsException">The path is empty, absolute, has '..', or a link along it leaves the folder.</exception>
    public static string ResolveInside(string root, string relative, string what)
    {
        try
        {
            return PathGuard.ResolveInside(root, relative);
        }
        catch (UnsafePathException ex)
        {
            throw new PluginSettingsException($"{what}: {ex.Message}");
        }
    }
}

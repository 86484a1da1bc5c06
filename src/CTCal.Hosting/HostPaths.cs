using CTCal.Core.Models;

namespace CTCal.Hosting;

/// <summary>Resolves paths from <c>plugins.json</c> inside the file's folder (see <see cref="PathGuard"/>).</summary>
public static class HostPaths
{
    /// <exception cref="PluginsFileException">The path is absolute, has '..', or a link along it leaves the folder.</exception>
    public static string ResolveInside(string root, string relative, string file, string field)
    {
        try
        {
            return PathGuard.ResolveInside(root, relative);
        }
        catch (UnsafePathException ex)
        {
            throw new PluginsFileException(file, field, ex.Message);
        }
    }
}

namespace CTCal.Host.Plugins;

/// <summary>Resolves paths from <c>plugins.json</c> inside the file's folder; refuses <c>..</c>, absolute paths and symbolic links.</summary>
public static class HostPaths
{
    public static string ResolveInside(string root, string relative, string file, string field)
    {
        if (Path.IsPathRooted(relative) || relative.Contains(':'))
        {
            throw new PluginsFileException(file, field, $"'{relative}' must be a relative path");
        }

        string[] segments = relative.Split('/', '\\');
        if (segments.Contains(".."))
        {
            throw new PluginsFileException(file, field, $"'{relative}' may not contain '..'");
        }

        string rootFull = Path.GetFullPath(root);
        string full = Path.GetFullPath(Path.Combine(rootFull, relative));
        string rootWithSep = Path.EndsInDirectorySeparator(rootFull) ? rootFull : rootFull + Path.DirectorySeparatorChar;
        if (full != rootFull && !full.StartsWith(rootWithSep, StringComparison.Ordinal))
        {
            throw new PluginsFileException(file, field, $"'{relative}' escapes {rootFull}");
        }

        string current = rootFull;
        foreach (string segment in segments.Where(s => s.Length > 0 && s != "."))
        {
            current = Path.Combine(current, segment);
            FileSystemInfo info = Directory.Exists(current) ? new DirectoryInfo(current) : new FileInfo(current);
            if (info.LinkTarget is not null)
            {
                throw new PluginsFileException(file, field, $"'{relative}' goes through the symbolic link {current}");
            }
        }

        return full;
    }
}

namespace CTCal.Plugin.Hosting;

/// <summary>Resolves a relative path from settings inside a root folder, refusing anything that escapes it.</summary>
internal static class PluginPaths
{
    /// <summary>
    /// Returns the absolute path of <paramref name="relative"/> under <paramref name="root"/>. Refuses absolute paths,
    /// <c>..</c> segments, and existing symbolic links along the way (a link could point anywhere).
    /// </summary>
    /// <param name="what">Names the setting in error messages (file and field).</param>
    public static string ResolveInside(string root, string relative, string what)
    {
        if (string.IsNullOrWhiteSpace(relative))
        {
            throw new PluginSettingsException($"{what}: path must not be empty");
        }

        if (Path.IsPathRooted(relative) || relative.Contains(':'))
        {
            throw new PluginSettingsException($"{what}: '{relative}' must be relative to {root}");
        }

        string[] segments = relative.Split('/', '\\');
        if (segments.Any(s => s == ".."))
        {
            throw new PluginSettingsException($"{what}: '{relative}' may not contain '..'");
        }

        string rootFull = Path.GetFullPath(root);
        string full = Path.GetFullPath(Path.Combine(rootFull, relative));
        string rootWithSep = Path.EndsInDirectorySeparator(rootFull) ? rootFull : rootFull + Path.DirectorySeparatorChar;
        if (!full.StartsWith(rootWithSep, StringComparison.Ordinal) && full != rootFull)
        {
            throw new PluginSettingsException($"{what}: '{relative}' escapes {root}");
        }

        // Each existing component below the root must be a real directory/file, not a link.
        string current = rootFull;
        foreach (string segment in segments.Where(s => s.Length > 0 && s != "."))
        {
            current = Path.Combine(current, segment);
            FileSystemInfo info = Directory.Exists(current) ? new DirectoryInfo(current) : new FileInfo(current);
            if (info.LinkTarget is not null)
            {
                throw new PluginSettingsException($"{what}: '{relative}' goes through the symbolic link {current}");
            }
        }

        return full;
    }
}

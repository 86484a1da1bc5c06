namespace CTCal.Core.Models;

/// <summary>
/// Resolves paths read from files (plugins.json entries, manifests) relative to a root folder, refusing any that could
/// reach outside it: absolute or drive-rooted paths, any ".." segment, and symbolic links (anywhere along the path)
/// whose target lies outside the root. The target itself need not exist.
/// </summary>
public static class PathGuard
{
    private static StringComparison PathComparison =>
        OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

    /// <summary>The full path of <paramref name="relative"/> inside <paramref name="root"/>.</summary>
    /// <exception cref="UnsafePathException">the path is empty, absolute, contains "..", or a link along it leaves the root.</exception>
    public static string ResolveInside(string root, string relative)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(relative);
        if (relative.Length == 0 || string.IsNullOrWhiteSpace(relative))
            throw new UnsafePathException(root, relative, "the path is empty");
        if (relative.Contains('\0'))
            throw new UnsafePathException(root, relative, "the path contains a NUL character");
        if (Path.IsPathRooted(relative) || relative.StartsWith('/') || relative.StartsWith('\\') || (relative.Length >= 2 && relative[1] == ':'))
            throw new UnsafePathException(root, relative, "absolute paths are not allowed; give a path relative to the folder");
        string[] segments = relative.Split('/', '\\');
        if (segments.Any(s => s == ".."))
            throw new UnsafePathException(root, relative, "'..' segments are not allowed");

        string fullRoot = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        string resolvedRoot = ResolveFinal(fullRoot) ?? fullRoot;
        string full = Path.GetFullPath(Path.Combine(fullRoot, string.Join(Path.DirectorySeparatorChar, segments)));
        if (!IsInside(full, fullRoot))
            throw new UnsafePathException(root, relative, "the path resolves outside the folder");

        // Walk the path one segment at a time, following links, and require every link target to stay inside the root.
        string current = resolvedRoot;
        foreach (string segment in segments)
        {
            if (segment.Length == 0 || segment == ".") continue;
            string next = Path.Combine(current, segment);
            string? target;
            try
            {
                target = ResolveFinal(next);
            }
            catch (IOException e)
            {
                throw new UnsafePathException(root, relative, $"cannot resolve the link '{next}' ({e.Message})");
            }
            if (target is not null)
            {
                if (!IsInside(target, resolvedRoot) && !IsInside(target, fullRoot))
                    throw new UnsafePathException(root, relative, $"'{next}' is a link to '{target}', outside the folder");
                next = target;
            }
            current = next;
        }
        return full;
    }

    /// <summary>
    /// True when <paramref name="first"/> and <paramref name="second"/> are the same folder or one lies inside the other,
    /// after making both absolute and following every link along the parts of them that exist. A command that reads one
    /// folder and writes the other refuses such a pair before writing anything.
    /// </summary>
    public static bool Overlaps(string first, string second)
    {
        string a = Canonical(first), b = Canonical(second);
        return IsInside(a, b) || IsInside(b, a);
    }

    /// <summary>The absolute form of <paramref name="path"/> with each existing link along it replaced by its final target.</summary>
    private static string Canonical(string path)
    {
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        string root = Path.GetPathRoot(full) ?? "";
        string current = root;
        foreach (string segment in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            current = Path.Combine(current, segment);
            if (!Path.Exists(current)) continue;
            string? target = ResolveFinal(current);
            if (target is not null) current = target;
        }
        return Path.TrimEndingDirectorySeparator(current);
    }

    /// <summary>The final target of a link at <paramref name="path"/>, or null when it is not a link (or does not exist).</summary>
    private static string? ResolveFinal(string path)
    {
        FileSystemInfo info = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
        if (info.LinkTarget is null) return null;
        var final = info.ResolveLinkTarget(returnFinalTarget: true);
        return final is null ? null : Path.TrimEndingDirectorySeparator(Path.GetFullPath(final.FullName));
    }

    private static bool IsInside(string path, string root)
    {
        path = Path.TrimEndingDirectorySeparator(path);
        if (path.Equals(root, PathComparison)) return true;
        string prefix = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        return path.StartsWith(prefix, PathComparison);
    }
}

namespace CTCal.Core.Models;

/// <summary>A relative path that would leave its root folder ("..", an absolute path, or a symbolic link pointing outside).</summary>
public sealed class UnsafePathException : Exception
{
    public UnsafePathException(string root, string relativePath, string reason)
        : base($"path '{relativePath}' under '{root}' is refused: {reason}")
    {
        Root = root;
        RelativePath = relativePath;
    }

    /// <summary>The folder the path had to stay inside.</summary>
    public string Root { get; }

    /// <summary>The relative path as given.</summary>
    public string RelativePath { get; }
}

namespace CTCal.Core.Models;

/// <summary>
/// A model folder that cannot be used: required files missing (all of them listed), or weights only in a pickle-based
/// format. The message names the folder and every problem.
/// </summary>
public sealed class ModelFolderException : Exception
{
    public ModelFolderException(string folder, IReadOnlyList<string> problems)
        : base(problems.Count == 1
            ? $"model folder '{folder}': {problems[0]}"
            : $"model folder '{folder}' cannot be used:{string.Concat(problems.Select(p => Environment.NewLine + "  - " + p))}")
    {
        Folder = folder;
        Problems = problems;
    }

    /// <summary>The folder (or file) given.</summary>
    public string Folder { get; }

    /// <summary>One line per problem (missing file, refused pickle file, ...).</summary>
    public IReadOnlyList<string> Problems { get; }
}

namespace CTCal.Tests;

/// <summary>Locates the repository's test data (tests/data) from a test assembly's output folder.</summary>
internal static class TestPaths
{
    private static readonly Lazy<string> RepoRootLazy = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "CTCal.sln"))) return dir.FullName;
        }
        throw new DirectoryNotFoundException($"CTCal.sln not found above {AppContext.BaseDirectory}");
    });

    /// <summary>The repository root (the folder holding CTCal.sln).</summary>
    public static string RepoRoot => RepoRootLazy.Value;

    /// <summary>tests/data.</summary>
    public static string Data => Path.Combine(RepoRoot, "tests", "data");

    /// <summary>tests/data/fixtures: reference data made with diffusers 0.27.2 and openai/CLIP.</summary>
    public static string Fixtures => Path.Combine(Data, "fixtures");

    /// <summary>A fresh temporary folder, deleted by the caller (or left for inspection on failure).</summary>
    public static string NewTempDir(string prefix = "ctcal-test")
    {
        string path = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }
}

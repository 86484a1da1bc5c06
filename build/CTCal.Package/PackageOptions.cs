namespace CTCal.Package;

/// <summary>What to build.</summary>
/// <param name="Rids">Runtime identifiers, each one package (see <see cref="PackageLayout.SupportedRids"/>).</param>
/// <param name="OutputFolder">Gets &lt;rid&gt;/&lt;plugin id&gt;/ and the zips; its .work folder holds the isolated build.</param>
/// <param name="ReadyToRun">Precompile the plugin's and the trainer's assemblies (crossgen2); the IL stays for other runtimes.</param>
/// <param name="Gpu">The <c>CTCalGpu</c> build switch: None (CPU), DirectML or Cuda (their packages must be on the feed).</param>
/// <param name="Zip">Also write &lt;id&gt;-&lt;version&gt;-&lt;rid&gt;.zip of each folder.</param>
/// <param name="PluginFramework">
/// The plugin's target framework when not its default (net8.0, CTCalLibraryTarget), for hosts on a newer runtime: ReadyToRun
/// code compiled against .NET 8 is not used by a .NET 10 runtime, compiled against .NET 10 it is (docs/packaging.md).
/// </param>
public sealed record PackageOptions(
    IReadOnlyList<string> Rids,
    string OutputFolder,
    bool ReadyToRun = true,
    string Gpu = "None",
    bool Zip = true,
    string? PluginFramework = null)
{
    /// <summary>The repository root (the folder holding CTCal.sln).</summary>
    public string RepoRoot { get; init; } = FindRepoRoot(AppContext.BaseDirectory);

    public static string FindRepoRoot(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "CTCal.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException($"CTCal.sln not found above {start}");
    }
}

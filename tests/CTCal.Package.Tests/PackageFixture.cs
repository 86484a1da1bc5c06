using CTCal.Package;
using CTCal.Tests;

namespace CTCal.Package.Tests;

/// <summary>
/// Builds the linux-x64 and win-x64 packages once for all tests of the collection (with the same builder and options as
/// the documented command), into a temporary folder removed at the end. <c>CTCAL_TEST_PACKAGES</c> may name a folder that
/// already holds packages built by that command (&lt;rid&gt;/ctcal.onnx and the zips); it is used as is and kept.
/// </summary>
public sealed class PackageFixture : IDisposable
{
    public const string ReuseVariable = "CTCAL_TEST_PACKAGES";

    private readonly string? _temporary;

    public PackageFixture()
    {
        string? reuse = Environment.GetEnvironmentVariable(ReuseVariable);
        if (!string.IsNullOrEmpty(reuse))
        {
            Folder = reuse;
            Packages = PackageLayout.SupportedRids.Select(rid => Existing(reuse, rid)).ToList();
            return;
        }

        _temporary = TestPaths.NewTempDir("ctcal-package");
        Folder = _temporary;
        var options = new PackageOptions(PackageLayout.SupportedRids, _temporary) { RepoRoot = TestPaths.RepoRoot };
        var log = new StringWriter();
        try
        {
            Packages = new PackageBuilder(options, log).BuildAll();
        }
        catch (PackageException ex)
        {
            Directory.Delete(_temporary, recursive: true);
            throw new InvalidOperationException($"{ex.Message}{Environment.NewLine}{log}", ex);
        }

        BuildLog = log.ToString();
    }

    public string Folder { get; }

    public string BuildLog { get; } = "";

    public IReadOnlyList<PackageResult> Packages { get; }

    public PackageResult For(string rid) => Packages.Single(p => p.Rid == rid);

    private static PackageResult Existing(string folder, string rid)
    {
        string manifestPath = Directory.GetFiles(Path.Combine(folder, rid), PackageLayout.ManifestFile, SearchOption.AllDirectories).Single();
        var manifest = PluginManifest.Read(manifestPath);
        string package = Path.GetDirectoryName(manifestPath)!;
        string zip = Path.Combine(folder, PackageLayout.ZipName(manifest.Id, manifest.Version, rid));
        return new PackageResult(rid, package, File.Exists(zip) ? zip : null, manifest, PackageResult.SizeOf(package),
            File.Exists(zip) ? new FileInfo(zip).Length : null, PackageResult.SizeOf(Path.Combine(package, PackageLayout.TrainerFolder)));
    }

    public void Dispose()
    {
        if (_temporary is not null && Directory.Exists(_temporary))
        {
            Directory.Delete(_temporary, recursive: true);
        }
    }
}

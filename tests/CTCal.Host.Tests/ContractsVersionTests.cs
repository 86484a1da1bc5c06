using CTCal.Contracts;
using CTCal.Hosting;
using CTCal.Tests;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// Plugins compiled (Roslyn, during the test) against an older and a newer CTCal.Contracts than this host's: each is refused
/// at load with a message naming both versions, before MEF touches a type, so no type-load or file-load error surfaces;
/// the real plugin beside them keeps loading.
/// </summary>
public sealed class ContractsVersionTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-contracts");

    public void Dispose() => Directory.Delete(_root, true);

    private static readonly Version HostVersion = typeof(IPluginContext).Assembly.GetName().Version!;

    // Another build of the contracts: same assembly name, another version, and an interface of another shape.
    private const string ContractsSource = """
        [assembly: System.Reflection.AssemblyVersion("VERSION")]
        namespace CTCal.Contracts
        {
            public interface IImageGenerator { string Describe(); }
            public static class PluginMetadataKeys { public const string Id = "Id"; public const string Name = "Name"; public const string Version = "Version"; }
        }
        """;

    private const string PluginSource = """
        using System.Composition;
        using CTCal.Contracts;

        namespace Mismatched;

        [Export(typeof(IImageGenerator))]
        [ExportMetadata(PluginMetadataKeys.Id, "mismatched")]
        [ExportMetadata(PluginMetadataKeys.Name, "Built against other contracts")]
        [ExportMetadata(PluginMetadataKeys.Version, "0.0.1")]
        public sealed class Generator : IImageGenerator
        {
            public string Describe() => "built against other contracts";
        }
        """;

    private static IEnumerable<MetadataReference> Platform() =>
        ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => Path.GetFileName(p) is { } name && (name.StartsWith("System.", StringComparison.Ordinal) || name is "netstandard.dll" or "mscorlib.dll"))
            .Select(p => MetadataReference.CreateFromFile(p));

    private static byte[] Emit(CSharpCompilation compilation)
    {
        using var stream = new MemoryStream();
        var result = compilation.Emit(stream);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        return stream.ToArray();
    }

    /// <summary>Compiles the plugin against contracts <paramref name="version"/> into plugins/&lt;name&gt;/ (without the contracts, as a plugin ships).</summary>
    private object PluginAgainst(string name, Version version)
    {
        var options = new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary);
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        byte[] contracts = Emit(CSharpCompilation.Create("CTCal.Contracts",
            [CSharpSyntaxTree.ParseText(ContractsSource.Replace("VERSION", version.ToString()), parse)], Platform(), options));
        byte[] plugin = Emit(CSharpCompilation.Create($"Mismatched.{name}",
            [CSharpSyntaxTree.ParseText(PluginSource, parse)], [.. Platform(), MetadataReference.CreateFromImage(contracts)], options));
        string folder = Path.Combine(_root, "plugins", name);
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, $"Mismatched.{name}.dll"), plugin);
        return new { id = name, path = $"plugins/{name}", assembly = $"Mismatched.{name}.dll", enabled = true, settings = new { } };
    }

    [Fact]
    public void PluginsBuiltAgainstOlderOrNewerContractsAreRefusedNamingBothVersions()
    {
        var older = new Version(HostVersion.Major == 0 ? 0 : HostVersion.Major - 1, 9, 0, 0);
        var newer = new Version(HostVersion.Major + 1, 0, 0, 0);
        PluginFolders.CopyPlugin(_root, "good");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        string file = PluginFolders.WritePluginsJson(_root, PluginAgainst("older", older), PluginFolders.Entry("good", "good"), PluginAgainst("newer", newer));

        var log = new RecordingLog();
        using var host = PluginHost.Load(PluginsFile.Load(file), log, _ => log);

        Assert.Equal(["good"], host.Plugins.Select(p => p.Entry.Id));
        Assert.Equal(["older", "newer"], host.Failures.Select(f => f.PluginId));
        foreach (var (failure, version) in host.Failures.Zip(new[] { older, newer }))
        {
            var mismatch = Assert.IsType<ContractsVersionMismatchException>(failure.Error);
            Assert.Equal(version, mismatch.PluginContracts);
            Assert.Equal(HostVersion, mismatch.HostContracts);
            Assert.Contains($"CTCal.Contracts {version}", failure.ToString());
            Assert.Contains($"CTCal.Contracts {HostVersion}", failure.ToString());
            Assert.DoesNotContain("TypeLoadException", failure.ToString());
            Assert.DoesNotContain("FileLoadException", failure.ToString());
        }

        Assert.Contains(log.Entries, e => e.Severity == LogSeverity.Error && e.Message.Contains("newer"));
    }

    [Fact]
    public void ThePluginOfThisRepositoryReferencesTheHostsContractsVersion()
    {
        string plugin = Path.Combine(PluginFolders.CopyPlugin(_root, "good"), "CTCal.Plugin.dll");
        var reference = System.Reflection.AssemblyName.GetAssemblyName(plugin);
        Assert.Equal("CTCal.Plugin", reference.Name);
        var log = new RecordingLog();
        using var host = PluginHost.Load(PluginsFile.Load(PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("good", "good"))), log, _ => log);
        Assert.Empty(host.Failures);
        Assert.Equal(HostVersion, ContractsVersion.ReferencedBy(Assert.Single(host.Plugins).Assembly));
    }
}

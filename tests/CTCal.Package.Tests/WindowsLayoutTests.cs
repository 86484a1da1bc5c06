using System.IO.Compression;
using System.Text.Json;
using CTCal.Contracts;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Package.Tests;

/// <summary>
/// The win-x64 package, built on this machine by the shared fixture and inspected file by file (it cannot run here): every
/// managed file of the plugin's deps file present; ONNX Runtime's DLLs under runtimes/win-x64/native and listed there for
/// win-x64 (what the plugin's AssemblyDependencyResolver reads); the trainer self-contained for win-x64 with libtorch's DLLs
/// beside ctcal-train.exe and in its deps file (where TorchSharp's loader and the .NET host look); the manifest's fields.
/// </summary>
[Collection(PackageCollection.Name)]
public sealed class WindowsLayoutTests
{
    private const string Rid = "win-x64";

    private readonly PackageResult _package;
    private readonly ITestOutputHelper _output;

    public WindowsLayoutTests(PackageFixture packages, ITestOutputHelper output)
    {
        _package = packages.For(Rid);
        _output = output;
        foreach (var p in packages.Packages)
        {
            output.WriteLine(p.ToString());
        }
    }

    private string Folder => _package.Folder;

    [Fact]
    public void TheManifestDescribesThePlugin()
    {
        var manifest = PluginManifest.Read(Path.Combine(Folder, PackageLayout.ManifestFile));
        Assert.Equal("ctcal.onnx", manifest.Id);
        Assert.Matches(@"^\d+\.\d+\.\d+", manifest.Version);
        Assert.Equal("CTCal.Plugin.dll", manifest.Assembly);
        Assert.True(File.Exists(Path.Combine(Folder, manifest.Assembly)));
        Assert.Equal(typeof(IPluginContext).Assembly.GetName().Version!.ToString(), manifest.ContractsVersion);
        Assert.Equal(".NETCoreApp,Version=v8.0", manifest.TargetFramework);
        Assert.Equal(Rid, manifest.Rid);
        Assert.Equal(["sd1", "sd2", "sd3"], manifest.Families);
        Assert.Equal(["cpu"], manifest.ExecutionProviders); // the DirectML build needs -p:CTCalGpu=DirectML and its package
        Assert.Equal("trainer/ctcal-train.exe", manifest.Trainer);
        Assert.True(File.Exists(Path.Combine(Folder, manifest.Trainer)));
        Assert.True(manifest.ReadyToRun);
    }

    [Fact]
    public void EveryManagedDependencyAndOnnxRuntimeAreWhereTheLoadContextResolvesThem()
    {
        using var deps = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, PackageLayout.PluginDeps)));
        var libraries = deps.RootElement.GetProperty("targets").EnumerateObject().SelectMany(t => t.Value.EnumerateObject()).ToList();

        var managed = libraries.Where(l => l.Value.TryGetProperty("runtime", out _))
            .SelectMany(l => l.Value.GetProperty("runtime").EnumerateObject().Select(a => Path.GetFileName(a.Name))).ToList();
        Assert.Contains("CTCal.Plugin.dll", managed);
        Assert.Contains("Microsoft.ML.OnnxRuntime.dll", managed);
        Assert.All(managed, file => Assert.True(File.Exists(Path.Combine(Folder, file)), $"{file} is in the deps file but not in the package"));
        // The boundary assemblies come from the host and must not be shipped (a second copy would split the types).
        Assert.False(File.Exists(Path.Combine(Folder, "CTCal.Contracts.dll")));
        Assert.Empty(Directory.GetFiles(Folder, "System.Composition*.dll"));

        var native = libraries.Where(l => l.Value.TryGetProperty("runtimeTargets", out _))
            .SelectMany(l => l.Value.GetProperty("runtimeTargets").EnumerateObject()).ToList();
        Assert.All(native, a => Assert.Equal(Rid, a.Value.GetProperty("rid").GetString()));
        Assert.All(native, a => Assert.True(File.Exists(Path.Combine(Folder, a.Name)), $"{a.Name} is in the deps file but not in the package"));
        Assert.Contains(native, a => a.Name == "runtimes/win-x64/native/onnxruntime.dll" && a.Value.GetProperty("assetType").GetString() == "native");
        Assert.True(File.Exists(Path.Combine(Folder, "runtimes", "win-x64", "native", "onnxruntime.dll")));
        Assert.Equal(["win-x64"], Directory.GetDirectories(Path.Combine(Folder, "runtimes")).Select(Path.GetFileName));
        Assert.DoesNotContain(Directory.GetFiles(Folder, "*.so", SearchOption.AllDirectories), f => !f.Contains(Path.DirectorySeparatorChar + "trainer" + Path.DirectorySeparatorChar));
    }

    [Fact]
    public void TheTrainerIsASelfContainedWindowsAppWithLibtorchBesideIt()
    {
        string trainer = Path.Combine(Folder, PackageLayout.TrainerFolder);
        string exe = Path.Combine(trainer, "ctcal-train.exe");
        using (var stream = File.OpenRead(exe))
        {
            Assert.Equal((byte)'M', (byte)stream.ReadByte());
            Assert.Equal((byte)'Z', (byte)stream.ReadByte());
        }

        // Self-contained: the runtime is inside, the runtimeconfig names it as included.
        Assert.True(File.Exists(Path.Combine(trainer, "coreclr.dll")));
        Assert.True(File.Exists(Path.Combine(trainer, "hostfxr.dll")));
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(trainer, "ctcal-train.runtimeconfig.json")));
        Assert.True(config.RootElement.GetProperty("runtimeOptions").TryGetProperty("includedFrameworks", out _));

        using var deps = JsonDocument.Parse(File.ReadAllText(Path.Combine(trainer, "ctcal-train.deps.json")));
        Assert.Equal(".NETCoreApp,Version=v10.0/win-x64", deps.RootElement.GetProperty("runtimeTarget").GetProperty("name").GetString());
        var libraries = deps.RootElement.GetProperty("targets").EnumerateObject().SelectMany(t => t.Value.EnumerateObject()).ToList();
        var files = libraries.SelectMany(l => new[] { "runtime", "native" }
                .Where(kind => l.Value.TryGetProperty(kind, out _))
                .SelectMany(kind => l.Value.GetProperty(kind).EnumerateObject().Select(a => Path.GetFileName(a.Name))))
            .ToHashSet(StringComparer.Ordinal);
        Assert.All(files, file => Assert.True(File.Exists(Path.Combine(trainer, file)), $"{file} is in the trainer's deps file but not beside it"));

        // libtorch (libtorch-cpu-win-x64) and TorchSharp's native half, beside the executable and in its deps file.
        foreach (string dll in new[] { "torch_cpu.dll", "torch.dll", "c10.dll", "LibTorchSharp.dll", "TorchSharp.dll", "onnxruntime.dll" })
        {
            Assert.Contains(dll, files);
            Assert.True(File.Exists(Path.Combine(trainer, dll)), $"{dll} missing beside ctcal-train.exe");
        }

        Assert.Empty(Directory.GetFiles(trainer, "*.so", SearchOption.AllDirectories));
        Assert.All(PackageLayout.UnusedTrainerFiles, unused => Assert.DoesNotContain(unused, files));
        Assert.False(File.Exists(Path.Combine(trainer, "libSkiaSharp.pdb")), "SkiaSharp's native debug symbols are left out");
        _output.WriteLine($"trainer: {files.Count} files in its deps file, {PackageResult.Mib(_package.TrainerBytes)}");
    }

    [Fact]
    public void TheZipHoldsExactlyTheFolder()
    {
        Assert.NotNull(_package.Zip);
        using var zip = ZipFile.OpenRead(_package.Zip!);
        string top = Path.GetFileName(Folder) + "/";
        var inZip = zip.Entries.Where(e => !e.FullName.EndsWith('/')).Select(e => e.FullName[top.Length..]).Order(StringComparer.Ordinal).ToList();
        Assert.All(zip.Entries, e => Assert.StartsWith(top, e.FullName, StringComparison.Ordinal));
        var inFolder = Directory.EnumerateFiles(Folder, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(Folder, f).Replace('\\', '/')).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(inFolder, inZip);
    }
}

using System.Reflection;
using System.Runtime.Loader;
using CTCal.Build;
using CTCal.Tests;
using Xunit;

namespace CTCal.Package.Tests;

/// <summary>
/// The linux-x64 package as the plugin's load context sees it (the same AssemblyDependencyResolver over its deps file):
/// ONNX Runtime from runtimes/linux-x64/native, managed files from the folder, the boundary assemblies from nowhere (the
/// host supplies them); and the trainer executable with libstdc++'s GLIBCXX_3.4.32 need already weak.
/// </summary>
[Collection(PackageCollection.Name)]
public sealed class LinuxLayoutTests
{
    private readonly PackageResult _package;

    public LinuxLayoutTests(PackageFixture packages) => _package = packages.For("linux-x64");

    [SkippableFact]
    public void TheLoadContextResolvesOnnxRuntimeFromRuntimesNative()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the resolver picks the assets of the RID it runs on");
        string folder = _package.Folder;
        var resolver = new AssemblyDependencyResolver(Path.Combine(folder, PackageLayout.PluginAssembly));
        Assert.Equal(Path.Combine(folder, "runtimes", "linux-x64", "native", "libonnxruntime.so"), resolver.ResolveUnmanagedDllToPath("onnxruntime"));
        Assert.Equal(Path.Combine(folder, "Microsoft.ML.OnnxRuntime.dll"), resolver.ResolveAssemblyToPath(new AssemblyName("Microsoft.ML.OnnxRuntime")));
        Assert.Null(resolver.ResolveAssemblyToPath(new AssemblyName("CTCal.Contracts")));
        Assert.Equal(["linux-x64"], Directory.GetDirectories(Path.Combine(folder, "runtimes")).Select(Path.GetFileName));
    }

    [SkippableFact]
    public void TheTrainerIsExecutableAndItsTorchSharpLibraryCarriesTheLibstdcxxFix()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "Unix file modes");
        string trainer = Path.Combine(_package.Folder, PackageLayout.TrainerFolder);
        if (!OperatingSystem.IsWindows()) // always true past the skip; the analyzer (CA1416) does not read Skip.IfNot
        {
            Assert.True(File.GetUnixFileMode(Path.Combine(trainer, "ctcal-train")).HasFlag(UnixFileMode.UserExecute));
        }

        foreach (string library in new[] { "libtorch_cpu.so", "libc10.so", "libLibTorchSharp.so", "libcoreclr.so" })
        {
            Assert.True(File.Exists(Path.Combine(trainer, library)), $"{library} missing beside ctcal-train");
        }

        // Left out (nothing loads them; the fine-tune in LinuxPackageTests runs without them).
        Assert.All(PackageLayout.UnusedTrainerFiles, unused => Assert.False(File.Exists(Path.Combine(trainer, unused)), $"{unused} should be left out"));

        // Patching a copy again finds the requirement already weak: the package works on Debian 12's libstdc++ too.
        string copy = Path.Combine(TestPaths.NewTempDir("ctcal-so"), "libLibTorchSharp.so");
        try
        {
            File.Copy(Path.Combine(trainer, "libLibTorchSharp.so"), copy);
            Assert.Equal(GlibcxxWeakVersionPatch.Outcome.AlreadyWeak, GlibcxxWeakVersionPatch.PatchFile(copy, "GLIBCXX_3.4.32"));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(copy)!, recursive: true);
        }
    }
}

namespace CTCal.Package;

/// <summary>Names inside a plugin package folder; the plugin (TrainerLocator) and the layout tests use the same ones.</summary>
public static class PackageLayout
{
    /// <summary>The plugin assembly a host's plugins.json names.</summary>
    public const string PluginAssembly = "CTCal.Plugin.dll";

    /// <summary>The dependency manifest the plugin's load context resolves managed and native files through.</summary>
    public const string PluginDeps = "CTCal.Plugin.deps.json";

    /// <summary>The plugin manifest beside the DLL.</summary>
    public const string ManifestFile = "ctcal-plugin.json";

    /// <summary>The self-contained trainer sidecar's folder inside the package.</summary>
    public const string TrainerFolder = "trainer";

    /// <summary>
    /// Native files the trainer's packages bring that nothing loads at run time, left out of the sidecar: SkiaSharp's
    /// Windows debug symbols (92 MiB), libtorch's Python bindings (they need a Python) and its test and backend-example
    /// libraries. None is a dependency (DT_NEEDED) of libtorch_cpu, libtorch, libc10 or libLibTorchSharp.
    /// </summary>
    public static readonly IReadOnlySet<string> UnusedTrainerFiles = new HashSet<string>(StringComparer.Ordinal)
    {
        "libSkiaSharp.pdb",
        "libtorch_python.so",
        "libjitbackend_test.so",
        "libtorchbind_test.so",
        "libbackend_with_compiler.so",
        "libaoti_custom_ops.so",
        "libnnapi_backend.so",
    };

    /// <summary>The runtime identifiers a package is built for.</summary>
    public static readonly IReadOnlyList<string> SupportedRids = ["linux-x64", "win-x64"];

    /// <summary>The trainer executable for <paramref name="rid"/>.</summary>
    public static string TrainerExecutable(string rid) => IsWindows(rid) ? "ctcal-train.exe" : "ctcal-train";

    /// <summary>Where ONNX Runtime's native libraries sit (the load context resolves them there through the deps file).</summary>
    public static string NativeFolder(string rid) => Path.Combine("runtimes", rid, "native");

    public static bool IsWindows(string rid) => rid.StartsWith("win", StringComparison.Ordinal);

    /// <summary>The folder name inside the output and the zip: what a host copies into its plugins folder.</summary>
    public static string FolderName(string pluginId) => pluginId;

    public static string ZipName(string pluginId, string version, string rid) => $"{pluginId}-{version}-{rid}.zip";
}

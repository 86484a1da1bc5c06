using System.Reflection;
using CTCal.Core.Models;

namespace CTCal.MainJob;

/// <summary>
/// Where the trainer and the plugin were built, as baked into this assembly at build time (see the csproj), and the
/// repository root (for the shipped bases under <c>assets/</c>).
/// </summary>
internal static class BuildInfo
{
    public static string? TrainerAssembly => Metadata("CTCal.TrainerAssembly");

    public static string? PluginAssembly => Metadata("CTCal.PluginAssembly");

    public static string? RepositoryRoot => Metadata("CTCal.RepositoryRoot");

    private static string? Metadata(string key) =>
        typeof(BuildInfo).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == key)?.Value is { Length: > 0 } v ? v : null;

    /// <summary>The shipped base of <paramref name="family"/>, relative to the repository: <c>assets/base-model</c> (SD 1.x-style UNet) or <c>assets/base-model-sd3</c>.</summary>
    public static string DefaultBaseModelFolder(string family = ModelFamily.Sd1) =>
        Path.Combine("assets", family == ModelFamily.Sd3 ? "base-model-sd3" : "base-model");

    /// <summary>
    /// The default base model of <paramref name="family"/> (<see cref="DefaultBaseModelFolder"/>) under the current
    /// directory's repository, else the build's.
    /// </summary>
    public static string DefaultBaseModel(string family = ModelFamily.Sd1)
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "CTCal.sln")))
            {
                return Path.Combine(dir.FullName, DefaultBaseModelFolder(family));
            }
        }

        return Path.Combine(RepositoryRoot ?? Directory.GetCurrentDirectory(), DefaultBaseModelFolder(family));
    }

    /// <summary>The trainer's executable (the apphost beside <c>ctcal-train.dll</c>), or a clear error.</summary>
    public static string TrainerExecutable()
    {
        string dll = TrainerAssembly ?? throw new InvalidOperationException("this build of ctcal-main does not record where ctcal-train was built");
        string dir = Path.GetDirectoryName(dll)!;
        string exe = Path.Combine(dir, OperatingSystem.IsWindows() ? "ctcal-train.exe" : "ctcal-train");
        if (!File.Exists(exe))
        {
            throw new FileNotFoundException($"trainer executable {exe} not found; build it: dotnet build src/CTCal.Trainer.Cli -c Release", exe);
        }

        return exe;
    }

    /// <summary>The plugin's build output folder (with CTCal.Plugin.dll and its .deps.json), or a clear error.</summary>
    public static string PluginFolder()
    {
        string dll = PluginAssembly ?? throw new InvalidOperationException("this build of ctcal-main does not record where CTCal.Plugin was built");
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"plugin assembly {dll} not found; build it: dotnet build src/CTCal.Plugin -c Release", dll);
        }

        return Path.GetDirectoryName(dll)!;
    }
}

using System.Runtime.InteropServices;
using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Hosting;

namespace CTCal.MainJob;

/// <summary>
/// Stage c: a host workspace <c>&lt;out&gt;/host/</c> laid out like a <c>ctcal-host</c> installation: <c>plugins.json</c>
/// (written here), <c>plugins/CTCal.Plugin/</c> (a copy of the plugin's build output, this platform's native runtime
/// only) and <c>models/</c>. It is loaded with CTCal.Hosting's <see cref="PluginHost"/>, exactly as <c>ctcal-host</c> does:
/// one load context per plugin, composed with MEF. The trainer is found by the plugin on <c>PATH</c>, which the job
/// prepends with the trainer's build folder (plugins.json may only name paths inside its own folder).
/// </summary>
internal sealed class HostWorkspace : IDisposable
{
    public const string PluginId = "ctcal.onnx";
    public const string PluginFolderName = "plugins/CTCal.Plugin";

    private HostWorkspace(string folder, PluginHost host, IImageGenerator generator, IModelExporter exporter, IFineTuner fineTuner)
    {
        Folder = folder;
        Host = host;
        Generator = generator;
        Exporter = exporter;
        FineTuner = fineTuner;
    }

    public string Folder { get; }

    public string ModelsFolder => Path.Combine(Folder, "models");

    public PluginHost Host { get; }

    public IImageGenerator Generator { get; }

    public IModelExporter Exporter { get; }

    public IFineTuner FineTuner { get; }

    /// <summary>Lays out the workspace and loads its plugins.</summary>
    /// <exception cref="InvalidOperationException">The plugin failed to load or lacks a capability (the message says why).</exception>
    public static HostWorkspace Open(string folder, string pluginBuildFolder, int threads, ILogSink hostLog, Func<string, ILogSink> pluginLog)
    {
        Directory.CreateDirectory(folder);
        Directory.CreateDirectory(Path.Combine(folder, "models"));
        SyncPluginFolder(pluginBuildFolder, Path.Combine(folder, PluginFolderName));
        string pluginsJson = Path.Combine(folder, "plugins.json");
        AtomicFile.WriteText(pluginsJson, PluginsJson(threads));

        var file = PluginsFile.Load(pluginsJson);
        var host = PluginHost.Load(file, hostLog, pluginLog);
        try
        {
            if (host.Failures.Count > 0)
            {
                throw new InvalidOperationException($"plugin failed to load from {pluginsJson}: {string.Join("; ", host.Failures)}");
            }

            var generator = host.Generators.FirstOrDefault()?.Value ?? throw new InvalidOperationException($"{pluginsJson}: no plugin exports an image generator");
            var exporter = host.Exporters.FirstOrDefault()?.Value ?? throw new InvalidOperationException($"{pluginsJson}: no plugin exports a model exporter");
            var tuner = host.FineTuners.FirstOrDefault()?.Value ?? throw new InvalidOperationException($"{pluginsJson}: no plugin offers fine-tuning");
            return new HostWorkspace(folder, host, generator, exporter, tuner);
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    /// <summary>The plugins.json the job uses: DDIM by default, CPU, <paramref name="threads"/> intra-op threads per session.</summary>
    public static string PluginsJson(int threads)
    {
        var document = new
        {
            version = 1,
            plugins = new[]
            {
                new
                {
                    id = PluginId,
                    path = PluginFolderName,
                    assembly = "CTCal.Plugin.dll",
                    enabled = true,
                    settings = new
                    {
                        modelsFolder = "models",
                        defaultScheduler = "ddim",
                        executionProviders = new[] { "cpu" },
                        intraOpThreads = threads,
                        interOpThreads = 1,
                        memoryMode = "balanced",
                        // The study's recorded numbers came from plain exports; the cpu profile (the plugin's auto choice
                        // here) agrees within 1e-4 but moves pixels, so the main job keeps plain to reproduce them.
                        exportOptimize = "plain",
                    },
                },
            },
        };
        return JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>
    /// Copies the plugin's build output: the top-level files and <c>runtimes/&lt;this RID&gt;</c> (the other platforms'
    /// native libraries are not needed here). Files whose size and time match are left alone.
    /// </summary>
    public static void SyncPluginFolder(string source, string target)
    {
        if (!File.Exists(Path.Combine(source, "CTCal.Plugin.dll")))
        {
            throw new FileNotFoundException($"plugin build folder {source} has no CTCal.Plugin.dll", Path.Combine(source, "CTCal.Plugin.dll"));
        }

        string rid = RuntimeInformation.RuntimeIdentifier;
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(source, file);
            string[] parts = relative.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
            if (parts.Length > 1 && parts[0] == "runtimes" && parts[1] != rid)
            {
                continue;
            }

            if (parts.Length > 1 && parts[0] != "runtimes")
            {
                continue; // satellite or stray folders
            }

            string destination = Path.Combine(target, relative);
            var from = new FileInfo(file);
            var to = new FileInfo(destination);
            if (to.Exists && to.Length == from.Length && to.LastWriteTimeUtc == from.LastWriteTimeUtc)
            {
                continue;
            }

            AtomicFile.Copy(file, destination, keepLastWriteTime: true);
        }
    }

    /// <summary>Prepends <paramref name="directory"/> to this process's PATH (children inherit it).</summary>
    public static void PrependToPath(string directory)
    {
        string path = Environment.GetEnvironmentVariable("PATH") ?? "";
        var entries = path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        if (entries.Length > 0 && entries[0] == directory)
        {
            return;
        }

        Environment.SetEnvironmentVariable("PATH", directory + Path.PathSeparator + path);
    }

    public void Dispose() => Host.Dispose();
}

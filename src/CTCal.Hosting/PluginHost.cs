using System.Composition;
using System.Composition.Hosting;
using System.Reflection;
using System.Text.Json;
using CTCal.Contracts;

namespace CTCal.Hosting;

/// <summary>An export of a loaded plugin with its metadata.</summary>
public sealed record PluginExport<T>(string PluginId, PluginExportMetadata Metadata, T Value);

/// <summary>A plugin whose assembly loaded and composed. Its container owns (and disposes) the parts.</summary>
public sealed class LoadedPlugin : IDisposable
{
    internal LoadedPlugin(PluginEntry entry, Assembly assembly, CompositionHost container)
    {
        Entry = entry;
        Assembly = assembly;
        Container = container;
    }

    public PluginEntry Entry { get; }

    public Assembly Assembly { get; }

    internal CompositionHost Container { get; }

    public List<PluginExport<IImageGenerator>> Generators { get; } = new();

    public List<PluginExport<IModelExporter>> Exporters { get; } = new();

    public List<PluginExport<IFineTuner>> FineTuners { get; } = new();

    public void Dispose() => Container.Dispose();
}

/// <summary>Why a plugin or one of its exports was skipped.</summary>
public sealed record PluginFailure(string PluginId, string What, Exception Error)
{
    public override string ToString() => $"{PluginId}: {What}: {Describe(Error)}";

    /// <summary>The innermost useful message (composition wraps constructor exceptions).</summary>
    public static string Describe(Exception error)
    {
        var e = error;
        while (e is TargetInvocationException or CompositionFailedException && e.InnerException is not null)
        {
            e = e.InnerException;
        }

        return e == error ? $"{e.GetType().Name}: {e.Message}" : $"{e.GetType().Name}: {e.Message} (via {error.GetType().Name})";
    }
}

/// <summary>
/// Loads the plugins listed in <c>plugins.json</c>: each into its own <see cref="PluginLoadContext"/>, composed with
/// System.Composition, with an <see cref="IPluginContext"/> exported into its container. A plugin that is missing,
/// fails to load or throws while being created is recorded in <see cref="Failures"/> and skipped; the others work.
/// </summary>
public sealed class PluginHost : IDisposable
{
    private readonly ILogSink _log;

    private PluginHost(PluginsFile file, ILogSink log)
    {
        File = file;
        _log = log;
    }

    public PluginsFile File { get; }

    public List<LoadedPlugin> Plugins { get; } = new();

    public List<PluginFailure> Failures { get; } = new();

    public IEnumerable<PluginExport<IImageGenerator>> Generators => Plugins.SelectMany(p => p.Generators);

    public IEnumerable<PluginExport<IModelExporter>> Exporters => Plugins.SelectMany(p => p.Exporters);

    public IEnumerable<PluginExport<IFineTuner>> FineTuners => Plugins.SelectMany(p => p.FineTuners);

    /// <summary>Loads every enabled plugin of <paramref name="file"/>.</summary>
    /// <param name="pluginLog">Creates the log sink handed to a plugin, by plugin id.</param>
    public static PluginHost Load(PluginsFile file, ILogSink hostLog, Func<string, ILogSink> pluginLog)
    {
        var host = new PluginHost(file, hostLog);
        foreach (var entry in file.Plugins)
        {
            if (!entry.Enabled)
            {
                hostLog.Log(LogSeverity.Information, $"Plugin {entry.Id} is disabled in {file.FilePath}");
                continue;
            }

            host.LoadOne(entry, pluginLog(entry.Id));
        }

        return host;
    }

    private void LoadOne(PluginEntry entry, ILogSink pluginLog)
    {
        if (!System.IO.File.Exists(entry.AssemblyPath))
        {
            Fail(entry.Id, "load", new FileNotFoundException($"Plugin assembly {entry.AssemblyPath} not found (plugins[{entry.Index}].assembly in {File.FilePath})", entry.AssemblyPath));
            return;
        }

        CompositionHost container;
        Assembly assembly;
        try
        {
            var alc = new PluginLoadContext(entry.Id, entry.AssemblyPath);
            assembly = alc.LoadFromAssemblyPath(entry.AssemblyPath);

            // Before MEF reads a type: a plugin built against other contracts is refused by name and both versions.
            ContractsVersion.Check(entry.Id, entry.AssemblyPath, assembly);
            var context = new PluginContext(entry.Id, entry.Directory, File.BaseDirectory, entry.Settings, File.FilePath, pluginLog);
            container = new ContainerConfiguration()
                .WithAssembly(assembly)
                .WithExport<IPluginContext>(context)
                .CreateContainer();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Fail(entry.Id, "load", ex);
            return;
        }

        var plugin = new LoadedPlugin(entry, assembly, container);
        Collect(plugin, plugin.Generators);
        Collect(plugin, plugin.Exporters);
        Collect(plugin, plugin.FineTuners);
        int count = plugin.Generators.Count + plugin.Exporters.Count + plugin.FineTuners.Count;
        if (count == 0)
        {
            Fail(entry.Id, "compose", new InvalidOperationException($"{entry.AssemblyPath} exports no usable CTCal capability"));
            plugin.Dispose();
            return;
        }

        _log.Log(LogSeverity.Information, $"Loaded plugin {entry.Id} from {entry.AssemblyPath} ({count} exports)");
        Plugins.Add(plugin);
    }

    /// <summary>Creates every export of type <typeparamref name="T"/> now, so constructor failures surface at load time.</summary>
    private void Collect<T>(LoadedPlugin plugin, List<PluginExport<T>> into)
        where T : class
    {
        IEnumerable<Lazy<T, PluginExportMetadata>> exports;
        try
        {
            exports = plugin.Container.GetExports<Lazy<T, PluginExportMetadata>>().ToArray();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Fail(plugin.Entry.Id, $"{typeof(T).Name} exports", ex);
            return;
        }

        foreach (var export in exports)
        {
            try
            {
                into.Add(new PluginExport<T>(plugin.Entry.Id, export.Metadata, export.Value));
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Fail(plugin.Entry.Id, $"{typeof(T).Name} {export.Metadata.Id}", ex);
            }
        }
    }

    private void Fail(string pluginId, string what, Exception ex)
    {
        var failure = new PluginFailure(pluginId, what, ex);
        Failures.Add(failure);
        _log.Log(LogSeverity.Error, $"Plugin {pluginId}: {what} failed; skipped", ex);
    }

    public void Dispose()
    {
        foreach (var plugin in Plugins)
        {
            try
            {
                plugin.Dispose();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _log.Log(LogSeverity.Warning, $"Plugin {plugin.Entry.Id} threw while being disposed", ex);
            }
        }

        Plugins.Clear();
    }

    private sealed record PluginContext(
        string PluginId,
        string PluginDirectory,
        string BaseDirectory,
        JsonElement Settings,
        string SettingsSource,
        ILogSink Log) : IPluginContext;
}

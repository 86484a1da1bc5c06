using System.Collections.Concurrent;
using System.Composition;
using CTCal.Contracts;
using CTCal.Plugin.Models;
using CTCal.Plugin.Onnx;

namespace CTCal.Plugin.Hosting;

/// <summary>
/// State shared by this plugin's exports: validated settings, the model catalog and the loaded sessions. One instance
/// per composition container; the container disposes it (and with it every loaded session).
/// </summary>
[Export]
[Shared]
internal sealed class PluginRuntime : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<ModelSessions>> _sessions = new(StringComparer.Ordinal);

    /// <summary>Reads this plugin's settings from the host; invalid settings fail composition with the file and field.</summary>
    [ImportingConstructor]
    public PluginRuntime(IPluginContext context)
        : this(PluginSettings.Parse(context.Settings, context.BaseDirectory, context.SettingsSource), context.Log)
    {
        PluginDirectory = context.PluginDirectory;
    }

    internal PluginRuntime(PluginSettings settings, ILogSink log)
    {
        Settings = settings;
        Log = log;
        Catalog = new ModelCatalog(settings.ModelsFolder, log);
    }

    public PluginSettings Settings { get; }

    /// <summary>The folder the plugin was loaded from (a package keeps its trainer sidecar there), or null when not known.</summary>
    public string? PluginDirectory { get; init; }

    public ILogSink Log { get; }

    public ModelCatalog Catalog { get; }

    public SessionTuning Tuning => new(
        Settings.IntraOpThreads, Settings.InterOpThreads, Settings.MemoryMode == MemoryMode.Low, Settings.MemoryLimitMiB * 1024L * 1024L);

    /// <summary>The sessions of <paramref name="model"/>, created on first use and then shared.</summary>
    public ModelSessions GetSessions(OnnxModelFolder model)
    {
        var lazy = _sessions.GetOrAdd(
            model.Info.Id,
            _ => new Lazy<ModelSessions>(
                () =>
                {
                    if (Tuning.CpuMemoryLimitBytes is long limit)
                    {
                        CpuMemoryLimit.Apply(limit, Log);
                    }

                    return ModelSessions.Create(model, Settings.ExecutionProviders, Tuning, Log);
                },
                LazyThreadSafetyMode.ExecutionAndPublication));
        try
        {
            return lazy.Value;
        }
        catch
        {
            // Do not cache a failed load: the next request tries again.
            _sessions.TryRemove(new KeyValuePair<string, Lazy<ModelSessions>>(model.Info.Id, lazy));
            throw;
        }
    }

    /// <summary>
    /// The sessions of <paramref name="model"/> plus a lease that keeps them alive until disposed, even if the model
    /// is unloaded meanwhile.
    /// </summary>
    public (ModelSessions Sessions, IDisposable Lease) Lease(OnnxModelFolder model)
    {
        while (true)
        {
            var sessions = GetSessions(model);
            var lease = Leases.Acquire(sessions);
            if (_sessions.TryGetValue(model.Info.Id, out var current) && current.IsValueCreated && ReferenceEquals(current.Value, sessions))
            {
                return (sessions, lease);
            }

            // Unloaded between creation and lease: let go and load again.
            lease.Dispose();
        }
    }

    public bool IsLoaded(string modelId) => _sessions.TryGetValue(modelId, out var lazy) && lazy.IsValueCreated;

    /// <summary>
    /// Unloads a model. Generations already running on it keep their own reference through <see cref="SessionLease"/>
    /// and the sessions are disposed when the last one finishes.
    /// </summary>
    public bool Unload(string modelId)
    {
        if (!_sessions.TryRemove(modelId, out var lazy) || !lazy.IsValueCreated)
        {
            return false;
        }

        Leases.Retire(lazy.Value);
        Log.Log(LogSeverity.Information, $"Unloaded model {modelId}");
        return true;
    }

    internal SessionLeases Leases { get; } = new();

    public void Dispose()
    {
        foreach (var key in _sessions.Keys.ToArray())
        {
            Unload(key);
        }
    }
}

using System.Collections.Concurrent;
using System.Composition;
using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Plugin.Models;
using CTCal.Plugin.Onnx;
using CTCal.Plugin.Pipeline;

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
    private readonly CancellationTokenSource _warmUpCancel = new();
    private readonly Lazy<ExecutionProviderKind> _sessionProvider;

    /// <summary>Reads this plugin's settings from the host; invalid settings fail composition with the file and field.</summary>
    [ImportingConstructor]
    public PluginRuntime(IPluginContext context)
        : this(PluginSettings.Parse(context.Settings, context.BaseDirectory, context.SettingsSource), context.Log, context.SettingsSource)
    {
        PluginDirectory = context.PluginDirectory;
    }

    /// <exception cref="PluginSettingsException"><c>warmUp</c> names a model the models folder does not have.</exception>
    internal PluginRuntime(PluginSettings settings, ILogSink log, string settingsSource = "plugins.json")
    {
        Settings = settings;
        Log = log;
        _sessionProvider = new Lazy<ExecutionProviderKind>(() =>
        {
            var (options, used, _) = ExecutionProviderSelector.Create(Settings.ExecutionProviders, Tuning, Log);
            options.Dispose();
            return used;
        });
        Catalog = new ModelCatalog(settings.ModelsFolder, log);
        IReadOnlyList<OnnxModelFolder> warm = settings.WarmUpAll ? Catalog.Scan() : settings.WarmUpModels.Select(id => FindWarmUpModel(id, settingsSource)).ToArray();
        WarmUpCompletion = warm.Count == 0 ? Task.CompletedTask : Task.Run(() => WarmUp(warm));
    }

    /// <summary>
    /// The <c>warmUp</c> setting's work, started in the background when the plugin is composed: each listed model is loaded
    /// and runs one tiny generation (<see cref="ModelWarmUp"/>), one model after another. A request that arrives meanwhile
    /// waits for its model's load (the sessions are created once) and then runs beside the warm-up generation. A model
    /// that fails to load or warm up is logged as a warning and loads on its first request as without <c>warmUp</c>.
    /// Completed (never faulted) when every model is done, at once without <c>warmUp</c>.
    /// </summary>
    public Task WarmUpCompletion { get; }

    public PluginSettings Settings { get; }

    /// <summary>The folder the plugin was loaded from (a package keeps its trainer sidecar there), or null when not known.</summary>
    public string? PluginDirectory { get; init; }

    public ILogSink Log { get; }

    public ModelCatalog Catalog { get; }

    public SessionTuning Tuning => new(
        Settings.IntraOpThreads, Settings.InterOpThreads, Settings.MemoryMode == MemoryMode.Low, Settings.MemoryLimitMiB * 1024L * 1024L);

    /// <summary>
    /// The provider a model's sessions would run on here: the first of the settings' providers that can be appended (CPU
    /// when none can), found once per plugin instance (so a missing provider's warning is logged once, not per export).
    /// What an <c>auto</c> one-click export is written for (<see cref="ModelExport.ExportChoice"/>).
    /// </summary>
    public ExecutionProviderKind SessionProvider() => _sessionProvider.Value;

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

    private OnnxModelFolder FindWarmUpModel(string id, string settingsSource)
    {
        try
        {
            return Catalog.Find(id);
        }
        catch (ArgumentException ex)
        {
            throw new PluginSettingsException($"{settingsSource}: settings.warmUp: {ex.Message}");
        }
    }

    private void WarmUp(IReadOnlyList<OnnxModelFolder> models)
    {
        foreach (var model in models)
        {
            var token = _warmUpCancel.Token;
            if (token.IsCancellationRequested)
            {
                return;
            }

            try
            {
                var clock = Stopwatch.StartNew();
                var (sessions, lease) = Lease(model);
                using (lease)
                {
                    double load = clock.Elapsed.TotalSeconds;
                    double generation = ModelWarmUp.Run(sessions, Settings, token);
                    Log.Log(LogSeverity.Information, $"Warmed up model {model.Info.Id}: sessions loaded in {load:F2} s, one 1-step generation at {model.Info.DefaultWidth}x{model.Info.DefaultHeight} in {generation:F2} s");
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (!token.IsCancellationRequested)
            {
                Log.Log(LogSeverity.Warning, $"Warm-up of model {model.Info.Id} failed ({ex.GetType().Name}: {ex.Message}); it loads on its first request instead", ex);
            }
        }
    }

    public void Dispose()
    {
        // A warm-up still running stops at its next step; its sessions are unloaded below with the others.
        _warmUpCancel.Cancel();
        WarmUpCompletion.Wait();
        _warmUpCancel.Dispose();
        foreach (var key in _sessions.Keys.ToArray())
        {
            Unload(key);
        }
    }
}

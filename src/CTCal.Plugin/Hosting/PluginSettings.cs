using System.Text.Json;
using CTCal.Plugin.Onnx;

namespace CTCal.Plugin.Hosting;

/// <summary>How much memory the ONNX Runtime sessions may trade for speed.</summary>
internal enum MemoryMode
{
    /// <summary>
    /// CPU arena, memory-pattern planning and thread spinning off (see <see cref="SessionPolicy"/>); guidance runs as two
    /// UNet calls of batch 1.
    /// </summary>
    Low,

    /// <summary>CPU arena and thread spinning on, memory-pattern planning off (see <see cref="SessionPolicy"/>); guidance runs as one batched UNet call.</summary>
    Balanced,
}

/// <summary>
/// This plugin's entry in <c>plugins.json</c> (<c>settings</c> object). Unknown keys are refused so that a typo does
/// not silently fall back to a default.
/// </summary>
internal sealed record PluginSettings
{
    public const string DefaultModelsFolder = "models";

    /// <summary>Absolute models folder (resolved inside the settings file's folder).</summary>
    public required string ModelsFolder { get; init; }

    public string DefaultScheduler { get; init; } = "euler_a";

    /// <summary>Preferred execution providers, best first; CPU is always tried last.</summary>
    public IReadOnlyList<ExecutionProviderKind> ExecutionProviders { get; init; } = ExecutionProviderSelector.PlatformDefault();

    /// <summary>Threads inside one operator (0: ONNX Runtime chooses).</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Threads across operators (0: ONNX Runtime chooses).</summary>
    public int InterOpThreads { get; init; }

    public MemoryMode MemoryMode { get; init; } = MemoryMode.Balanced;

    /// <summary>Largest accepted <see cref="MemoryLimitMiB"/>: ONNX Runtime's C# arena configuration takes a 32-bit byte count.</summary>
    public const int MaxMemoryLimitMiB = 4095;

    /// <summary>
    /// Cap, in MiB, on ONNX Runtime's CPU working memory (the tensors runs compute; not the weights) for all of this
    /// process's models together, or null for none.
    /// Enforced by one shared CPU arena registered in ONNX Runtime's environment (see <see cref="CpuMemoryLimit"/>).
    /// </summary>
    public int? MemoryLimitMiB { get; init; }

    /// <summary>Trainer executable for fine-tuning (absolute), or null to look up <c>ctcal-train</c> on PATH.</summary>
    public string? TrainerPath { get; init; }

    /// <summary>Optional ONNX Runtime GenAI model folder the subject finder asks (resolved inside the plugin folder); null: the lexicon only.</summary>
    public string? SubjectsModel { get; init; }

    /// <summary>Largest accepted step-cache interval (<see cref="StepCache"/> and the per-request override).</summary>
    public const int MaxStepCache = 100;

    /// <summary>
    /// Step caching (DeepCache) by default: a full UNet step every <c>stepCache</c> steps (0, N, 2N, ...) and shallow steps
    /// reusing its deep feature between them; 1 (the default) caches nothing. Applies to models exported with the step-cache
    /// graphs; a model without them runs uncached with a warning. A request overrides it with <c>"&lt;model id&gt;?stepCache=N"</c>.
    /// </summary>
    public int StepCache { get; init; } = 1;
    /// <summary>
    /// <c>warmUp: true</c>: every model of the models folder is loaded when the plugin starts and runs one tiny generation
    /// (see <see cref="PluginRuntime.WarmUpCompletion"/>), so that a host's first request finds its sessions loaded and
    /// ONNX Runtime's first-run work (thread pool start, arena growth, kernel set-up) done.
    /// </summary>
    public bool WarmUpAll { get; init; }

    /// <summary><c>warmUp: "id"</c> or <c>["id", ...]</c>: only these models are warmed up at start (empty: none, unless <see cref="WarmUpAll"/>).</summary>
    public IReadOnlyList<string> WarmUpModels { get; init; } = [];

    /// <summary>
    /// <c>exportOptimize</c>: the export profile of one-click exports (<see cref="ModelExport.OnnxModelExporter"/>). Null
    /// (<c>"auto"</c>, the default) picks it for the provider this plugin runs on (<see cref="ModelExport.ExportChoice"/>);
    /// otherwise plain, cpu, cuda or directml.
    /// </summary>
    public CTCal.Export.ExportOptimization? ExportOptimize { get; init; }

    /// <summary><c>exportPrecision</c>: fp32 (the default), fp16-weights or fp16 for one-click exports.</summary>
    public CTCal.Export.ExportPrecision ExportPrecision { get; init; } = CTCal.Export.ExportPrecision.Fp32;

    /// <summary>
    /// <c>exportStepCache</c>: whether one-click exports of UNet models include the step-cache graphs. Null (the default):
    /// when <see cref="StepCache"/> is above 1, so the configured caching applies to the models this plugin exports.
    /// </summary>
    public bool? ExportStepCache { get; init; }

    /// <summary>
    /// Denoiser calls through ONNX Runtime I/O binding (see <see cref="Pipeline.BoundDenoiser"/>). Not a plugins.json key:
    /// always on for hosts; false selects the per-call path, which tests compare the bound one against.
    /// </summary>
    public bool IoBinding { get; init; } = true;

    private static readonly string[] KnownKeys =
    {
        "modelsFolder", "defaultScheduler", "executionProviders", "intraOpThreads", "interOpThreads", "memoryMode", "memoryLimitMiB", "trainerPath", "subjectsModel",
        "stepCache",
        "warmUp",
        "exportOptimize", "exportPrecision", "exportStepCache",
    };

    /// <summary>Reads and validates settings; errors name <paramref name="source"/> and the field.</summary>
    /// <exception cref="PluginSettingsException">A field is missing its expected type or value.</exception>
    public static PluginSettings Parse(JsonElement settings, string baseDirectory, string source)
    {
        string Where(string field) => $"{source}: settings.{field}";

        if (settings.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
        {
            return new PluginSettings { ModelsFolder = PluginPaths.ResolveInside(baseDirectory, DefaultModelsFolder, Where("modelsFolder")) };
        }

        if (settings.ValueKind != JsonValueKind.Object)
        {
            throw new PluginSettingsException($"{source}: settings must be an object, found {settings.ValueKind}");
        }

        foreach (var property in settings.EnumerateObject())
        {
            if (Array.IndexOf(KnownKeys, property.Name) < 0)
            {
                throw new PluginSettingsException(
                    $"{Where(property.Name)}: unknown setting (known: {string.Join(", ", KnownKeys)})");
            }
        }

        string modelsRelative = ReadString(settings, "modelsFolder", Where) ?? DefaultModelsFolder;
        string modelsFolder = PluginPaths.ResolveInside(baseDirectory, modelsRelative, Where("modelsFolder"));

        string scheduler = ReadString(settings, "defaultScheduler", Where) ?? "euler_a";
        if (scheduler.Length == 0)
        {
            throw new PluginSettingsException($"{Where("defaultScheduler")}: must not be empty");
        }

        IReadOnlyList<ExecutionProviderKind> providers = ExecutionProviderSelector.PlatformDefault();
        if (settings.TryGetProperty("executionProviders", out var epElement))
        {
            if (epElement.ValueKind != JsonValueKind.Array)
            {
                throw new PluginSettingsException($"{Where("executionProviders")}: expected an array of provider names, found {epElement.ValueKind}");
            }

            var list = new List<ExecutionProviderKind>();
            int index = 0;
            foreach (var item in epElement.EnumerateArray())
            {
                string field = $"executionProviders[{index++}]";
                if (item.ValueKind != JsonValueKind.String)
                {
                    throw new PluginSettingsException($"{Where(field)}: expected a string, found {item.ValueKind}");
                }

                string name = item.GetString()!;
                if (!ExecutionProviderSelector.TryParse(name, out var kind))
                {
                    throw new PluginSettingsException(
                        $"{Where(field)}: unknown execution provider '{name}' (known: directml, cuda, cpu)");
                }

                if (!list.Contains(kind))
                {
                    list.Add(kind);
                }
            }

            if (list.Count == 0)
            {
                throw new PluginSettingsException($"{Where("executionProviders")}: must name at least one provider");
            }

            providers = list;
        }

        int intra = ReadThreads(settings, "intraOpThreads", Where);
        int inter = ReadThreads(settings, "interOpThreads", Where);

        var memory = MemoryMode.Balanced;
        string? memoryText = ReadString(settings, "memoryMode", Where);
        if (memoryText is not null)
        {
            memory = memoryText.ToLowerInvariant() switch
            {
                "low" => MemoryMode.Low,
                "balanced" => MemoryMode.Balanced,
                _ => throw new PluginSettingsException($"{Where("memoryMode")}: unknown value '{memoryText}' (known: low, balanced)"),
            };
        }

        int? memoryLimit = null;
        if (settings.TryGetProperty("memoryLimitMiB", out var limitElement) && limitElement.ValueKind != JsonValueKind.Null)
        {
            if (limitElement.ValueKind != JsonValueKind.Number || !limitElement.TryGetInt32(out int limit) || limit < 1 || limit > MaxMemoryLimitMiB)
            {
                throw new PluginSettingsException(
                    $"{Where("memoryLimitMiB")}: expected a whole number of MiB from 1 to {MaxMemoryLimitMiB} (or null for no limit), found {limitElement.GetRawText()}");
            }

            memoryLimit = limit;
        }

        int stepCache = 1;
        if (settings.TryGetProperty("stepCache", out var cacheElement) && cacheElement.ValueKind != JsonValueKind.Null)
        {
            if (cacheElement.ValueKind != JsonValueKind.Number || !cacheElement.TryGetInt32(out stepCache) || stepCache < 1 || stepCache > MaxStepCache)
            {
                throw new PluginSettingsException(
                    $"{Where("stepCache")}: expected a whole number of steps from 1 (no caching) to {MaxStepCache}, found {cacheElement.GetRawText()}");
            }
        }
        var (warmUpAll, warmUpModels) = ReadWarmUp(settings, Where);

        var exportOptimize = ReadNamed<CTCal.Export.ExportOptimization>(settings, "exportOptimize", CTCal.Export.ExportOptimizationNames.Name, Where, unset: "auto");
        var exportPrecision = ReadNamed<CTCal.Export.ExportPrecision>(settings, "exportPrecision", CTCal.Export.ExportPrecisionNames.Name, Where)
            ?? CTCal.Export.ExportPrecision.Fp32;

        bool? exportStepCache = null;
        if (settings.TryGetProperty("exportStepCache", out var exportCacheElement))
        {
            exportStepCache = exportCacheElement.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Null => null,
                _ => throw new PluginSettingsException($"{Where("exportStepCache")}: expected true, false or null (null: when stepCache is above 1), found {exportCacheElement.GetRawText()}"),
            };
        }

        string? trainer = ReadString(settings, "trainerPath", Where);
        string? trainerPath = trainer is null ? null : PluginPaths.ResolveInside(baseDirectory, trainer, Where("trainerPath"));
        string? subjects = ReadString(settings, "subjectsModel", Where);
        string? subjectsModel = subjects is null ? null : PluginPaths.ResolveInside(baseDirectory, subjects, Where("subjectsModel"));

        return new PluginSettings
        {
            ModelsFolder = modelsFolder,
            DefaultScheduler = scheduler,
            ExecutionProviders = providers,
            IntraOpThreads = intra,
            InterOpThreads = inter,
            MemoryMode = memory,
            MemoryLimitMiB = memoryLimit,
            TrainerPath = trainerPath,
            SubjectsModel = subjectsModel,
            StepCache = stepCache,
            WarmUpAll = warmUpAll,
            WarmUpModels = warmUpModels,
            ExportOptimize = exportOptimize,
            ExportPrecision = exportPrecision,
            ExportStepCache = exportStepCache,
        };
    }

    /// <summary><c>warmUp</c>: true | false | null | "model id" | ["model id", ...].</summary>
    private static (bool All, IReadOnlyList<string> Models) ReadWarmUp(JsonElement settings, Func<string, string> where)
    {
        if (!settings.TryGetProperty("warmUp", out var element))
        {
            return (false, []);
        }

        string expected = "expected true, false, a model id or an array of model ids";
        switch (element.ValueKind)
        {
            case JsonValueKind.Null:
            case JsonValueKind.False:
                return (false, []);
            case JsonValueKind.True:
                return (true, []);
            case JsonValueKind.String:
                return (false, [WarmUpId(element, "warmUp", where)]);
            case JsonValueKind.Array:
                var ids = new List<string>();
                int index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    string field = $"warmUp[{index++}]";
                    if (item.ValueKind != JsonValueKind.String)
                    {
                        throw new PluginSettingsException($"{where(field)}: {expected}, found {item.ValueKind}");
                    }

                    string id = WarmUpId(item, field, where);
                    if (!ids.Contains(id))
                    {
                        ids.Add(id);
                    }
                }

                return (false, ids);
            default:
                throw new PluginSettingsException($"{where("warmUp")}: {expected}, found {element.ValueKind}");
        }
    }

    private static string WarmUpId(JsonElement element, string field, Func<string, string> where)
    {
        string id = element.GetString()!;
        if (string.IsNullOrWhiteSpace(id) || id.IndexOfAny(['/', '\\']) >= 0 || id is "." or "..")
        {
            throw new PluginSettingsException($"{where(field)}: '{id}' is not a model id (a folder name inside modelsFolder)");
        }

        return id;
    }

    // The enum value whose canonical name (the exporter's own spelling, the one manifests record) the string field
    // `name` holds, case-insensitively; null when the field is absent, null or the `unset` word (such as "auto").
    private static T? ReadNamed<T>(JsonElement settings, string name, Func<T, string> canonical, Func<string, string> where, string? unset = null)
        where T : struct, Enum
    {
        string? text = ReadString(settings, name, where);
        if (text is null || (unset is not null && text.Equals(unset, StringComparison.OrdinalIgnoreCase))) return null;
        var values = Enum.GetValues<T>();
        foreach (var value in values)
            if (string.Equals(canonical(value), text, StringComparison.OrdinalIgnoreCase)) return value;
        string known = string.Join(", ", (unset is null ? [] : new[] { unset }).Concat(values.Select(canonical)));
        throw new PluginSettingsException($"{where(name)}: unknown value '{text}' (known: {known})");
    }

    private static string? ReadString(JsonElement settings, string name, Func<string, string> where)
    {
        if (!settings.TryGetProperty(name, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (element.ValueKind != JsonValueKind.String)
        {
            throw new PluginSettingsException($"{where(name)}: expected a string, found {element.ValueKind}");
        }

        return element.GetString()!;
    }

    private static int ReadThreads(JsonElement settings, string name, Func<string, string> where)
    {
        if (!settings.TryGetProperty(name, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return 0;
        }

        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt32(out int value) || value < 0 || value > 1024)
        {
            throw new PluginSettingsException($"{where(name)}: expected an integer from 0 to 1024, found {element.GetRawText()}");
        }

        return value;
    }
}

/// <summary>Invalid plugin settings; the message names the file and the field.</summary>
internal sealed class PluginSettingsException : Exception
{
    public PluginSettingsException(string message)
        : base(message)
    {
    }
}

using System.Text.Json;
using System.Text.Json.Nodes;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Schedulers;
using CTCal.Core.Weights;

namespace CTCal.Core.Checkpoints;

/// <summary>
/// An original-format single-file Stable Diffusion checkpoint (<c>.safetensors</c>, as released by Stability/RunwayML and
/// most fine-tune sites) read as a diffusers model without converting the file: the family is detected from the text
/// encoder's keys (CLIP <c>cond_stage_model.transformer.*</c> = SD 1.x, OpenCLIP <c>cond_stage_model.model.*</c> =
/// SD 2.x), the configs are derived from the tensor shapes (<see cref="SingleFileOptions.ConfigFolder"/> overrides them),
/// and each component's tensors are served under their diffusers names through <see cref="CheckpointKeyMap"/>
/// (<see cref="OpenWeights"/>). Non-model keys (EMA copy unless asked for, schedule buffers) are ignored; a key inside a
/// component that the map does not know is an error naming the file and the key. Pickle <c>.ckpt</c> files are refused.
/// </summary>
public sealed class SingleFileCheckpoint
{
    private readonly Dictionary<string, List<TensorSourceEntry>> _entries;

    private SingleFileCheckpoint(string path, string family, CheckpointKeyMap map, Dictionary<string, List<TensorSourceEntry>> entries,
        string unet, string vae, string text, string scheduler, TokenizerFiles? tokenizer, string prediction, bool assumed,
        bool hasEma, bool usesEma, IReadOnlyList<string> notes)
    {
        Path = path;
        Family = family;
        KeyMap = map;
        _entries = entries;
        UNetConfigJson = unet;
        VaeConfigJson = vae;
        TextEncoderConfigJson = text;
        SchedulerConfigJson = scheduler;
        TokenizerOrNull = tokenizer;
        PredictionType = prediction;
        PredictionTypeAssumed = assumed;
        HasEma = hasEma;
        UsesEma = usesEma;
        Notes = notes;
    }

    /// <summary>The checkpoint file's full path.</summary>
    public string Path { get; }

    /// <summary><see cref="ModelFamily.Sd1"/> or <see cref="ModelFamily.Sd2"/>.</summary>
    public string Family { get; }

    /// <summary>The key table used to read the file.</summary>
    public CheckpointKeyMap KeyMap { get; }

    /// <summary>unet/config.json text (derived, or from the config folder).</summary>
    public string UNetConfigJson { get; }

    /// <summary>vae/config.json text.</summary>
    public string VaeConfigJson { get; }

    /// <summary>text_encoder/config.json text.</summary>
    public string TextEncoderConfigJson { get; }

    /// <summary>scheduler/scheduler_config.json text, with <see cref="PredictionType"/>.</summary>
    public string SchedulerConfigJson { get; }

    /// <summary>The tokenizer files given by the options, or null (a single file carries none).</summary>
    public TokenizerFiles? TokenizerOrNull { get; }

    /// <summary>The tokenizer files.</summary>
    /// <exception cref="ModelFolderException">none was given; the message says how to give one.</exception>
    public TokenizerFiles Tokenizer => TokenizerOrNull ?? throw new ModelFolderException(Path,
        ["a single-file checkpoint carries no tokenizer; give a folder with the CLIP BPE files vocab.json and merges.txt " +
         "(e.g. the tokenizer/ folder of any SD 1.x/2.x diffusers model) as the tokenizer folder (--tokenizer)"]);

    /// <summary>epsilon, v_prediction or sample.</summary>
    public string PredictionType { get; }

    /// <summary>True when <see cref="PredictionType"/> was assumed from the family, not given.</summary>
    public bool PredictionTypeAssumed { get; }

    /// <summary>True when the file has an EMA copy of the UNet (<c>model_ema.*</c>).</summary>
    public bool HasEma { get; }

    /// <summary>True when the UNet is read from the EMA copy.</summary>
    public bool UsesEma { get; }

    /// <summary>What was assumed rather than read (one line each), for the caller to log.</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>The UNet config.</summary>
    public UNetConfig UNetConfig => UNetConfig.Parse(UNetConfigJson, $"{Path} (unet config)");

    /// <summary>The VAE config.</summary>
    public VaeConfig VaeConfig => VaeConfig.Parse(VaeConfigJson, $"{Path} (vae config)");

    /// <summary>The text encoder config.</summary>
    public ClipTextConfig TextEncoderConfig => ClipTextConfig.Parse(TextEncoderConfigJson, $"{Path} (text_encoder config)");

    /// <summary>The scheduler config.</summary>
    public SchedulerConfig SchedulerConfig => SchedulerConfig.Parse(SchedulerConfigJson, $"{Path} (scheduler config)");

    /// <summary>True when <paramref name="path"/> is an existing file (not a folder) named <c>*.safetensors</c>.</summary>
    public static bool IsSingleFile(string path) =>
        File.Exists(path) && path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);

    /// <summary>The family of an original checkpoint's keys, or null when they are neither (or both).</summary>
    public static string? DetectFamily(IEnumerable<string> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        bool clip = false, openClip = false;
        foreach (string k in keys)
        {
            clip |= k.StartsWith("cond_stage_model.transformer.", StringComparison.Ordinal);
            openClip |= k.StartsWith("cond_stage_model.model.transformer.resblocks.", StringComparison.Ordinal);
        }
        return clip == openClip ? null : clip ? ModelFamily.Sd1 : ModelFamily.Sd2;
    }

    /// <summary>Reads the header of <paramref name="path"/>, detects the family, derives the configs and maps every key.</summary>
    /// <exception cref="ModelFolderException">a pickle file, not an original SD 1.x/2.x checkpoint, missing or unknown keys,
    /// or an incomplete EMA copy; the message names the file and the keys.</exception>
    /// <exception cref="SafetensorsException">a malformed file.</exception>
    /// <exception cref="DiffusersConfigException">a config from the config folder is invalid.</exception>
    public static SingleFileCheckpoint Open(string path, SingleFileOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        options ??= new SingleFileOptions();
        if (WeightFiles.IsPickle(path)) throw new ModelFolderException(path, [WeightFiles.PickleRefusal(path)]);
        string full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new ModelFolderException(full, ["the checkpoint file does not exist"]);
        WeightFiles.EnsureSafetensors(full);
        if (options.PredictionType is { } p && !Schedulers.SchedulerConfig.PredictionTypes.Contains(p))
            throw new ArgumentException($"prediction type '{p}' is not one of {string.Join(", ", Schedulers.SchedulerConfig.PredictionTypes)}", nameof(options));

        Dictionary<string, (SafetensorsDType DType, long[] Shape)> header;
        using (var file = SafetensorsFile.Open(full))
            header = file.Tensors.ToDictionary(t => t.Name, t => (t.DType, t.Shape), StringComparer.Ordinal);

        string family = DetectFamily(header.Keys) ?? throw new ModelFolderException(full,
            ["not an original SD 1.x/2.x checkpoint: expected the text encoder under cond_stage_model.transformer.* (CLIP, SD 1.x) " +
             "or cond_stage_model.model.transformer.resblocks.* (OpenCLIP, SD 2.x), exactly one of them" +
             (header.Keys.Any(k => k.StartsWith("unet.", StringComparison.Ordinal) || k.StartsWith("down_blocks.", StringComparison.Ordinal))
                 ? "; this looks like diffusers-named weights, which belong in a diffusers folder" : "")]);

        var notes = new List<string> { $"family {family} detected from the text encoder's keys" };
        string? configFolder = options.ConfigFolder is null ? null : System.IO.Path.GetFullPath(options.ConfigFolder);
        if (configFolder is not null && !Directory.Exists(configFolder))
            throw new ModelFolderException(configFolder, ["the config folder does not exist"]);
        string? FromFolder(string relative)
        {
            if (configFolder is null) return null;
            string f = System.IO.Path.Combine(configFolder, relative);
            if (!File.Exists(f)) return null;
            notes.Add($"{relative} taken from {configFolder}");
            return File.ReadAllText(f);
        }

        string? schedulerText = FromFolder("scheduler/scheduler_config.json");
        string prediction;
        bool assumed = false;
        if (options.PredictionType is { } given) prediction = given;
        else if (schedulerText is not null) prediction = Schedulers.SchedulerConfig.Parse(schedulerText).PredictionType;
        else
        {
            prediction = family == ModelFamily.Sd2 ? "v_prediction" : "epsilon";
            assumed = true;
            notes.Add($"prediction type {prediction} assumed ({(family == ModelFamily.Sd2 ? "SD 2.x 768-v" : "SD 1.x")}); " +
                "the weights cannot tell, override it if the model predicts otherwise");
        }
        int image = options.ImageSize ?? (family == ModelFamily.Sd2 && prediction == "v_prediction" ? 768 : 512);
        if (options.ImageSize is null) notes.Add($"native image size {image} assumed");

        var shapes = header.ToDictionary(h => h.Key, h => h.Value.Shape, StringComparer.Ordinal);
        var derive = SingleFileConfigs.For(full, shapes);
        string vaeJson = FromFolder("vae/config.json") ?? derive.Vae(image);
        var vae = VaeConfig.Parse(vaeJson, $"{full} (vae config)");
        string unetJson = FromFolder("unet/config.json") ?? derive.UNet(family, image / vae.DownscaleFactor);
        string textJson = FromFolder("text_encoder/config.json") ?? derive.TextEncoder(family);
        notes.AddRange(derive.Notes);
        string schedulerJson = schedulerText is null ? SingleFileConfigs.Scheduler(family, prediction) : WithPrediction(schedulerText, prediction);

        var map = CheckpointKeyMap.Build(family, UNetConfig.Parse(unetJson, $"{full} (unet config)"), vae,
            ClipTextConfig.Parse(textJson, $"{full} (text_encoder config)"));
        bool hasEma = header.Keys.Any(k => k.StartsWith(CheckpointKeyMap.EmaRoot, StringComparison.Ordinal)
            && k is not ("model_ema.decay" or "model_ema.num_updates"));
        if (options.UseEma && !hasEma) throw new ModelFolderException(full, ["EMA weights were asked for, but the file has no model_ema.* keys"]);
        if (hasEma) notes.Add(options.UseEma ? "UNet read from the EMA copy (model_ema.*)" : "EMA copy (model_ema.*) present and ignored");

        var entries = MapKeys(full, header, map, options.UseEma);
        TokenizerFiles? tokenizer = FindTokenizer(options.TokenizerFolder ?? (configFolder is null ? null : System.IO.Path.Combine(configFolder, "tokenizer")),
            options.TokenizerFolder is not null);
        return new SingleFileCheckpoint(full, family, map, entries, unetJson, vaeJson, textJson, schedulerJson, tokenizer, prediction, assumed,
            hasEma, options.UseEma, notes);
    }

    private static string WithPrediction(string schedulerJson, string prediction)
    {
        var node = JsonNode.Parse(schedulerJson)?.AsObject() ?? throw new JsonException("the scheduler config is not a JSON object");
        node["prediction_type"] = prediction;
        return node.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static TokenizerFiles? FindTokenizer(string? folder, bool required)
    {
        if (folder is null) return null;
        string vocab = System.IO.Path.Combine(folder, "vocab.json"), merges = System.IO.Path.Combine(folder, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges)) return new TokenizerFiles(System.IO.Path.GetFullPath(vocab), System.IO.Path.GetFullPath(merges));
        if (required) throw new ModelFolderException(folder, ["the tokenizer folder needs vocab.json and merges.txt (the CLIP BPE files)"]);
        return null;
    }

    private static Dictionary<string, List<TensorSourceEntry>> MapKeys(string file, Dictionary<string, (SafetensorsDType DType, long[] Shape)> header,
        CheckpointKeyMap map, bool useEma)
    {
        var entries = new Dictionary<string, List<TensorSourceEntry>>(StringComparer.Ordinal)
        {
            [CheckpointKeyMap.UNet] = [], [CheckpointKeyMap.Vae] = [], [CheckpointKeyMap.TextEncoder] = [],
        };
        var unknown = new List<string>();
        var problems = new List<string>();
        foreach (var (key, (dtype, shape)) in header.OrderBy(h => h.Key, StringComparer.Ordinal))
        {
            bool inModel = key.StartsWith(CheckpointKeyMap.UNetRoot, StringComparison.Ordinal)
                || key.StartsWith(CheckpointKeyMap.VaeRoot, StringComparison.Ordinal) || key.StartsWith(CheckpointKeyMap.TextRoot, StringComparison.Ordinal);
            if (!inModel || map.IsIgnored(key)) continue;
            IReadOnlyList<MappedTensor>? mapped;
            try
            {
                mapped = map.ToDiffusers(key, shape);
            }
            catch (FormatException e)
            {
                problems.Add(e.Message);
                continue;
            }
            if (mapped is null)
            {
                unknown.Add(key);
                continue;
            }
            foreach (var m in mapped)
            {
                string sourceKey = key;
                var sourceDType = dtype;
                if (useEma && m.Component == CheckpointKeyMap.UNet)
                {
                    sourceKey = EmaKey(key);
                    if (!header.TryGetValue(sourceKey, out var ema)) { problems.Add($"'{key}' has no EMA copy '{sourceKey}'"); continue; }
                    if (!ema.Shape.SequenceEqual(shape)) { problems.Add($"EMA copy '{sourceKey}' has shape [{string.Join(", ", ema.Shape)}], '{key}' [{string.Join(", ", shape)}]"); continue; }
                    sourceDType = ema.DType;
                }
                entries[m.Component].Add(new TensorSourceEntry(m.Name, sourceDType, m.Shape, file, sourceKey, m.ElementOffset));
            }
        }
        if (unknown.Count > 0)
            problems.Add($"{unknown.Count} key(s) that the {map.Family} key map does not know (does the file match its derived or given configs?): " +
                string.Join(", ", unknown.Take(20)) + (unknown.Count > 20 ? ", ..." : ""));
        foreach (var (component, list) in entries)
            if (list.Count == 0) problems.Add($"no {component} tensors (expected keys under {Root(component, map.Family)})");
        if (problems.Count > 0) throw new ModelFolderException(file, problems);
        return entries;
    }

    private static string Root(string component, string family) => component switch
    {
        CheckpointKeyMap.UNet => CheckpointKeyMap.UNetRoot,
        CheckpointKeyMap.Vae => CheckpointKeyMap.VaeRoot,
        _ => family == ModelFamily.Sd2 ? "cond_stage_model.model." : "cond_stage_model.transformer.",
    };

    /// <summary>The LitEma key of a UNet key: <c>model.diffusion_model.a.b</c> -> <c>model_ema.diffusion_modelab</c>.</summary>
    public static string EmaKey(string unetKey)
    {
        ArgumentNullException.ThrowIfNull(unetKey);
        if (!unetKey.StartsWith("model.", StringComparison.Ordinal)) throw new ArgumentException($"'{unetKey}' is not a model.* key", nameof(unetKey));
        return CheckpointKeyMap.EmaRoot + unetKey["model.".Length..].Replace(".", "", StringComparison.Ordinal);
    }

    /// <summary>The diffusers names of <paramref name="component"/> (unet, vae, text_encoder) that the file gives.</summary>
    public IReadOnlyList<TensorSourceEntry> Entries(string component) =>
        _entries.TryGetValue(component, out var list) ? list : throw new ArgumentException($"unknown component '{component}' (unet, vae, text_encoder)", nameof(component));

    /// <summary>Opens the file for reading <paramref name="component"/>'s tensors under their diffusers names (the caller disposes it).</summary>
    /// <exception cref="SafetensorsException">the file changed since it was opened, or cannot be read.</exception>
    public TensorSource OpenWeights(string component)
    {
        var entries = Entries(component);
        return TensorSource.FromEntries($"{Path} ({component})", SafetensorsFile.Open(Path), entries);
    }

    /// <summary>The config.json text of a component (unet, vae, text_encoder) or of the scheduler.</summary>
    public string ConfigJson(string component) => component switch
    {
        CheckpointKeyMap.UNet => UNetConfigJson,
        CheckpointKeyMap.Vae => VaeConfigJson,
        CheckpointKeyMap.TextEncoder => TextEncoderConfigJson,
        "scheduler" => SchedulerConfigJson,
        _ => throw new ArgumentException($"unknown component '{component}'", nameof(component)),
    };
}

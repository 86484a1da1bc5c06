using System.Text.Json;
using System.Text.Json.Nodes;
using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Weights;

namespace CTCal.Export.Weights;

/// <summary>
/// What an export reads, from either a diffusers folder (configs, tokenizer, scheduler and <c>model_index.json</c> from
/// their files; weights as a plain, variant or sharded file) or an original single-file checkpoint (configs derived or
/// from <see cref="SingleFileOptions.ConfigFolder"/>, weights mapped by Core's <see cref="CheckpointKeyMap"/>). Missing
/// pieces are reported as problems, never guessed.
/// </summary>
internal sealed class ExportSource
{
    private readonly string? _variant;

    private ExportSource(string path, SingleFileCheckpoint? checkpoint, string? variant)
    {
        Path = path;
        Checkpoint = checkpoint;
        _variant = variant;
    }

    /// <summary>The folder or file given.</summary>
    public string Path { get; }

    /// <summary>The single-file checkpoint, or null for a folder.</summary>
    public SingleFileCheckpoint? Checkpoint { get; }

    /// <summary>Whether <paramref name="path"/> is an SD3 diffusers folder (<see cref="IsSD3"/>), without opening any weights.</summary>
    public static bool IsSD3Folder(string path) => Directory.Exists(path) && new ExportSource(path, null, null).IsSD3;

    /// <summary>Opens <paramref name="path"/>; a refused or unreadable file is reported in <paramref name="problems"/> and gives null.</summary>
    public static ExportSource? Open(string path, ExportOptions options, List<string> problems)
    {
        if (Directory.Exists(path)) return new ExportSource(path, null, options.Variant);
        if (!File.Exists(path))
        {
            problems.Add($"model folder '{path}' does not exist");
            return null;
        }
        try
        {
            return new ExportSource(path, SingleFileCheckpoint.Open(path, options.SingleFile), null);
        }
        catch (Exception e) when (e is ModelFolderException or SafetensorsException or Core.Diffusers.DiffusersConfigException or IOException or JsonException or ArgumentException)
        {
            problems.Add(e.Message);
            return null;
        }
    }

    /// <summary>
    /// A Stable Diffusion 3 folder: <c>model_index.json</c> names <c>StableDiffusion3Pipeline</c>, or (no index) the folder has
    /// <c>transformer/config.json</c> and no <c>unet/config.json</c>. Single-file checkpoints are SD 1.x/2.x.
    /// </summary>
    public bool IsSD3
    {
        get
        {
            if (Checkpoint is not null) return false;
            string index = System.IO.Path.Combine(Path, "model_index.json");
            if (File.Exists(index))
            {
                try
                {
                    return ModelIndex.Load(index).ClassName == ModelFolder.SD3PipelineClass;
                }
                catch (Exception e) when (e is Core.Diffusers.DiffusersConfigException or IOException)
                {
                    // an unreadable index is reported by ModelIndexEntries; decide by the folders
                }
            }
            return File.Exists(ConfigFile("transformer")) && !File.Exists(ConfigFile("unet"));
        }
    }

    private string ConfigFile(string component) => System.IO.Path.Combine(Path, component, "config.json");

    /// <summary>Where the config of <paramref name="component"/> comes from (for messages).</summary>
    public string ConfigOrigin(string component) => Checkpoint is null ? ConfigFile(component) : $"{Path} ({component} config)";

    /// <summary>The config.json text of unet, vae or text_encoder, or null when the folder has none.</summary>
    public string? ConfigJson(string component)
    {
        if (Checkpoint is not null) return Checkpoint.ConfigJson(component);
        string file = ConfigFile(component);
        return File.Exists(file) ? File.ReadAllText(file) : null;
    }

    /// <summary>scheduler_config.json text, or null.</summary>
    public string? SchedulerJson()
    {
        if (Checkpoint is not null) return Checkpoint.SchedulerConfigJson;
        string file = System.IO.Path.Combine(Path, "scheduler", "scheduler_config.json");
        return File.Exists(file) ? File.ReadAllText(file) : null;
    }

    /// <summary>The tokenizer's folder, or null (a single file with no tokenizer given); SD3 folders also have tokenizer_2 and tokenizer_3.</summary>
    public string? TokenizerFolder(string name = "tokenizer") => Checkpoint is null
        ? System.IO.Path.Combine(Path, name)
        : Checkpoint.TokenizerOrNull is { } t ? System.IO.Path.GetDirectoryName(t.VocabPath) : null;

    /// <summary>The source's model_index.json entries <c>scheduler</c> and <c>_diffusers_version</c> (defaults when absent).</summary>
    public (JsonNode Scheduler, string Version) ModelIndexEntries(string defaultScheduler = "PNDMScheduler")
    {
        JsonNode scheduler = new JsonArray("diffusers", defaultScheduler);
        string version = "0.27.2";
        if (Checkpoint is not null)
        {
            string? cls = JsonNode.Parse(Checkpoint.SchedulerConfigJson)?["_class_name"]?.GetValue<string>();
            if (cls is not null) scheduler = new JsonArray("diffusers", cls);
            return (scheduler, version);
        }
        string source = System.IO.Path.Combine(Path, "model_index.json");
        if (!File.Exists(source)) return (scheduler, version);
        try
        {
            var src = JsonNode.Parse(File.ReadAllText(source));
            if (src?["scheduler"] is JsonArray s) scheduler = s.DeepClone();
            if (src?["_diffusers_version"] is JsonValue v && v.TryGetValue(out string? ver)) version = ver;
            return (scheduler, version);
        }
        catch (JsonException e)
        {
            throw new ExportValidationException([$"'{source}' is not valid JSON: {e.Message}"], e);
        }
    }

    /// <summary>
    /// Opens the weights of unet, vae or text_encoder (<paramref name="replacement"/>: a file used instead, e.g. fine-tuned
    /// UNet weights); problems are reported and give null.
    /// </summary>
    public TensorSource? OpenWeights(string component, string? replacement, List<string> problems)
    {
        try
        {
            if (replacement is not null) return TensorSource.Open(replacement);
            if (Checkpoint is not null) return Checkpoint.OpenWeights(component);
            return TensorSource.OpenComponent(System.IO.Path.Combine(Path, component), _variant);
        }
        catch (Exception e) when (e is ModelFolderException or SafetensorsException or IOException or UnauthorizedAccessException or JsonException)
        {
            problems.Add($"{component}: weights cannot be read: {e.Message}");
            return null;
        }
    }

    /// <summary>The tensor names of a component (for mapping kohya LoRA keys); empty when unreadable (reported later).</summary>
    public IReadOnlyList<string> WeightNames(string component, string? replacement)
    {
        using var source = OpenWeights(component, replacement, []);
        return source?.Tensors.Select(t => t.Name).ToList() ?? [];
    }
}

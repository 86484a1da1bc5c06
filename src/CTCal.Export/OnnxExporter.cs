using System.Text.Json;
using System.Text.Json.Nodes;
using CTCal.Core.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Schedulers;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;
using CTCal.Export.Weights;

namespace CTCal.Export;

/// <summary>
/// Turns a diffusers checkpoint (safetensors) into an ONNX model folder in the Optimum/OnnxStack layout:
/// <c>text_encoder/</c>, <c>unet/</c>, <c>vae_decoder/</c>, <c>vae_encoder/</c> (each <c>model.onnx</c> [+ <c>model.onnx.data</c>]
/// and the source <c>config.json</c>), <c>tokenizer/</c>, <c>scheduler/</c>, <c>model_index.json</c> and <c>ctcal_manifest.json</c>.
/// Everything is validated first (configs, every tensor's presence and shape, LoRA targets); only then is the folder
/// written, into a temporary sibling that replaces the output folder when complete (<see cref="ModelFolderSwap"/>, which
/// also finishes or undoes what a killed export of the same folder left behind).
/// </summary>
public static class OnnxExporter
{
    public const string ManifestFileName = OnnxModelManifest.FileName;
    public const int ManifestFormatVersion = OnnxModelManifest.CurrentFormatVersion;
    private static readonly string[] TokenizerFiles = ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"];

    private sealed record Part(string Folder, string ConfigPath, OnnxGraph Graph, ComponentWeights Weights);

    public static void Export(ExportOptions options, IProgress<ExportProgress>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        string model = Path.GetFullPath(options.ModelFolder);
        string output = Path.GetFullPath(options.OutputFolder).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        var opened = new List<ComponentWeights>();
        try
        {
            var parts = Prepare(options, model, output, opened, out var modelIndex);
            ct.ThrowIfCancellationRequested();
            WriteFolder(options, model, output, parts, modelIndex, progress, ct);
        }
        finally
        {
            foreach (var w in opened) w.Dispose();
        }
    }

    // Everything that can be checked without writing: paths, configs, weight files, tensors, LoRAs.
    private static List<Part> Prepare(ExportOptions options, string model, string output, List<ComponentWeights> opened, out JsonObject modelIndex)
    {
        modelIndex = new JsonObject();
        var problems = new List<string>();
        if (!Directory.Exists(model)) throw new ExportValidationException([$"model folder '{model}' does not exist"]);
        if (options.Components == ExportComponents.None) throw new ExportValidationException(["no components selected"]);
        if (PathGuard.Overlaps(output, model))
            throw new ExportValidationException([$"output folder '{output}' must not be, contain or lie inside the model folder '{model}'"]);
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any()
            && !File.Exists(Path.Combine(output, ManifestFileName)) && !options.Force)
            problems.Add($"output folder '{output}' exists, is not empty and was not written by this exporter (no {ManifestFileName}); pass Force to replace it");
        if (File.Exists(output)) problems.Add($"output path '{output}' is a file");
        if (options.TrainingMethod is { } method && !OnnxModelManifest.Methods.Contains(method))
            problems.Add($"training method '{method}' is not one of {string.Join(", ", OnnxModelManifest.Methods)}");
        if (options.TrainingSteps is < 0) problems.Add($"training steps must be >= 0, got {options.TrainingSteps}");

        var loras = new Dictionary<string, Dictionary<string, List<LoraDelta>>>(StringComparer.Ordinal);
        foreach (var spec in options.Loras)
        {
            try
            {
                foreach (var (component, byWeight) in LoraFile.Load(Path.GetFullPath(spec.Path), spec.Scale, c => WeightNames(model, c, options)))
                {
                    if (!loras.TryGetValue(component, out var target)) loras[component] = target = new(StringComparer.Ordinal);
                    foreach (var (weight, deltas) in byWeight)
                    {
                        if (!target.TryGetValue(weight, out var list)) target[weight] = list = [];
                        list.AddRange(deltas);
                    }
                }
            }
            catch (ExportValidationException e)
            {
                problems.AddRange(e.Problems);
            }
        }
        if (loras.ContainsKey(LoraFile.TextEncoder) && !options.Components.HasFlag(ExportComponents.TextEncoder))
            problems.Add("a LoRA updates the text encoder, but text_encoder is not among the exported components");
        if (options.UnetWeights is not null && !options.Components.HasFlag(ExportComponents.Unet))
            problems.Add($"UNet weights '{options.UnetWeights}' were given, but unet is not among the exported components");
        if (loras.ContainsKey(LoraFile.UNet) && !options.Components.HasFlag(ExportComponents.Unet))
            problems.Add("a LoRA updates the UNet, but unet is not among the exported components");

        var parts = new List<Part>();
        void Add(string folder, string configPath, Func<OnnxGraph> build, string weightsPath, string loraComponent)
        {
            OnnxGraph graph;
            try
            {
                graph = build();
            }
            catch (DiffusersConfigException e)
            {
                problems.Add(e.Message);
                return;
            }
            var weights = OpenWeights(folder, weightsPath, loras.GetValueOrDefault(loraComponent), problems);
            if (weights is null) return;
            opened.Add(weights);
            problems.AddRange(weights.Check(graph.Weights));
            parts.Add(new Part(folder, configPath, graph, weights));
        }

        if (options.Components.HasFlag(ExportComponents.TextEncoder))
        {
            string cfg = Path.Combine(model, "text_encoder", "config.json");
            Add("text_encoder", cfg, () => TextEncoderGraph.Build(ClipTextConfig.Load(cfg), options.Fp16),
                FindWeights(Path.Combine(model, "text_encoder"), "model", problems), LoraFile.TextEncoder);
        }
        if (options.Components.HasFlag(ExportComponents.Unet))
        {
            string cfg = Path.Combine(model, "unet", "config.json");
            string weights = options.UnetWeights is { } u ? Path.GetFullPath(u) : FindWeights(Path.Combine(model, "unet"), "diffusion_pytorch_model", problems);
            Add("unet", cfg, () => UNetGraph.Build(UNetConfig.Load(cfg), options.Fp16), weights, LoraFile.UNet);
        }
        string vaeCfg = Path.Combine(model, "vae", "config.json");
        if (options.Components.HasFlag(ExportComponents.VaeDecoder))
            Add("vae_decoder", vaeCfg, () => VaeGraphs.BuildDecoder(VaeConfig.Load(vaeCfg), options.Fp16),
                FindWeights(Path.Combine(model, "vae"), "diffusion_pytorch_model", problems), "vae");
        if (options.Components.HasFlag(ExportComponents.VaeEncoder))
            Add("vae_encoder", vaeCfg, () => VaeGraphs.BuildEncoder(VaeConfig.Load(vaeCfg), options.Fp16),
                FindWeights(Path.Combine(model, "vae"), "diffusion_pytorch_model", problems), "vae");

        try
        {
            modelIndex = ModelIndex(model, parts);
        }
        catch (ExportValidationException e)
        {
            problems.AddRange(e.Problems);
        }
        if (problems.Count > 0) throw new ExportValidationException(problems.Distinct().ToList());
        return parts;
    }

    // {stem}.safetensors, else {stem}.fp16.safetensors; pickle files are never loaded.
    /// <summary>The weight names of a LoRA component (what kohya keys are mapped back through); empty when unreadable (reported later).</summary>
    private static IEnumerable<string> WeightNames(string model, string component, ExportOptions options)
    {
        string path = component == LoraFile.UNet
            ? options.UnetWeights is { } u ? Path.GetFullPath(u) : FindWeights(Path.Combine(model, "unet"), "diffusion_pytorch_model", [])
            : FindWeights(Path.Combine(model, "text_encoder"), "model", []);
        if (!File.Exists(path)) return [];
        try
        {
            using var file = SafetensorsFile.Open(path);
            return file.Tensors.Select(t => t.Name).ToList();
        }
        catch (Exception e) when (e is SafetensorsException or IOException or UnauthorizedAccessException or JsonException)
        {
            return [];
        }
    }

    private static string FindWeights(string folder, string stem, List<string> problems)
    {
        foreach (string name in new[] { $"{stem}.safetensors", $"{stem}.fp16.safetensors" })
        {
            string path = Path.Combine(folder, name);
            if (File.Exists(path)) return path;
        }
        string expected = Path.Combine(folder, stem + ".safetensors");
        if (File.Exists(Path.Combine(folder, stem + ".bin")))
            problems.Add($"missing '{expected}': only a pickle file ({stem}.bin) is present, which is never loaded; convert it to safetensors");
        return expected;
    }

    private static ComponentWeights? OpenWeights(string component, string path, Dictionary<string, List<LoraDelta>>? loras, List<string> problems)
    {
        if (!File.Exists(path))
        {
            problems.Add($"{component}: weights file '{path}' does not exist");
            return null;
        }
        try
        {
            return new ComponentWeights(component, SafetensorsFile.Open(path), loras);
        }
        catch (Exception e) when (e is SafetensorsException or IOException or UnauthorizedAccessException or JsonException)
        {
            problems.Add($"{component}: weights file '{path}' cannot be read: {e.Message}");
            return null;
        }
    }

    private static void WriteFolder(ExportOptions options, string model, string output, List<Part> parts, JsonObject modelIndex,
        IProgress<ExportProgress>? progress, CancellationToken ct)
    {
        string parent = Path.GetDirectoryName(output) ?? throw new ExportValidationException([$"output folder '{output}' has no parent folder"]);
        Directory.CreateDirectory(parent);
        // What a killed export of this folder left: its swap finished or undone, its hidden folders removed.
        ModelFolderSwap.Recover(parent, Path.GetFileName(output));
        using var swap = ModelFolderSwap.Begin(output);
        string temp = swap.StagingFolder;
        var componentsJson = new JsonObject();
        foreach (var part in parts)
        {
            ct.ThrowIfCancellationRequested();
            string dir = Path.Combine(temp, part.Folder);
            long total = part.Graph.Weights.Sum(w => w.Shape.Aggregate(1L, (a, b) => a * b)) * (options.Fp16 ? 2 : 4);
            progress?.Report(new ExportProgress(part.Folder, "writing", 0, total));
            var files = OnnxModelWriter.Write(part.Graph, part.Weights, dir, options.ExternalDataThreshold,
                done => progress?.Report(new ExportProgress(part.Folder, "writing", done, total)), ct);
            File.Copy(part.ConfigPath, Path.Combine(dir, "config.json"));
            componentsJson[part.Folder] = ComponentManifest(part, files);
            progress?.Report(new ExportProgress(part.Folder, "done", total, total));
            if (FaultPoints.IsArmed) FaultPoints.Reached($"export.part-written:{part.Folder}");
        }
        CopyFolder(Path.Combine(model, "tokenizer"), Path.Combine(temp, "tokenizer"), TokenizerFiles);
        CopyFolder(Path.Combine(model, "scheduler"), Path.Combine(temp, "scheduler"), ["scheduler_config.json"]);
        WriteJson(Path.Combine(temp, "model_index.json"), modelIndex);
        Manifest(options, model, componentsJson).Write(temp);
        ct.ThrowIfCancellationRequested();
        swap.Commit(); // a failure before this point leaves the output folder as it was (Dispose deletes the staging folder)
    }

    private static void CopyFolder(string from, string to, string[] files)
    {
        if (!Directory.Exists(from)) return;
        foreach (string f in files)
        {
            string src = Path.Combine(from, f);
            if (!File.Exists(src)) continue;
            Directory.CreateDirectory(to);
            File.Copy(src, Path.Combine(to, f));
        }
    }

    private static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    private static JsonObject ComponentManifest(Part part, IReadOnlyList<WrittenFile> files)
    {
        static JsonArray Signatures(IEnumerable<TensorSignature> sigs) => new(sigs.Select(s => (JsonNode)new JsonObject
        {
            ["name"] = s.Name,
            ["dtype"] = s.ElementType,
            ["rank"] = s.Dims.Length,
            ["shape"] = new JsonArray(s.Dims.Select(d => d is string str ? JsonValue.Create(str) : (JsonNode)JsonValue.Create(Convert.ToInt64(d))).ToArray()),
        }).ToArray());
        return new JsonObject
        {
            ["weightsSource"] = part.Weights.FilePath,
            ["files"] = new JsonArray(files.Select(f => (JsonNode)new JsonObject
            {
                ["path"] = $"{part.Folder}/{f.RelativePath}",
                ["bytes"] = f.Bytes,
                ["sha256"] = f.Sha256,
            }).ToArray()),
            ["inputs"] = Signatures(part.Graph.InputSignatures),
            ["outputs"] = Signatures(part.Graph.OutputSignatures),
        };
    }

    /// <summary>
    /// The folder's <see cref="OnnxModelManifest"/>: family and native size from the source's configs (never guessed from a
    /// width), the VAE scaling factor and prediction type, the method (<c>base</c> when nothing replaces or is merged into the
    /// source's weights), and what was merged with hashes.
    /// </summary>
    private static OnnxModelManifest Manifest(ExportOptions options, string model, JsonObject components)
    {
        UNetConfig? unet = TryLoad(Path.Combine(model, "unet", "config.json"), UNetConfig.Load);
        ClipTextConfig? text = TryLoad(Path.Combine(model, "text_encoder", "config.json"), ClipTextConfig.Load);
        VaeConfig? vae = TryLoad(Path.Combine(model, "vae", "config.json"), VaeConfig.Load);
        string? prediction = TryLoad(Path.Combine(model, "scheduler", "scheduler_config.json"), SchedulerConfig.Load)?.PredictionType;
        int? native = unet is null ? null : unet.SampleSize * (vae?.DownscaleFactor ?? 8);
        bool merged = options.UnetWeights is not null || options.Loras.Count > 0;
        return new OnnxModelManifest
        {
            Family = ModelFamily.Detect(unet, text),
            Width = native,
            Height = native,
            VaeScalingFactor = vae?.ScalingFactor,
            PredictionType = prediction,
            Method = options.TrainingMethod ?? (merged ? null : "base"),
            Steps = options.TrainingSteps,
            SourceFolder = model,
            UnetWeights = options.UnetWeights is null ? null : new ManifestWeights(Path.GetFullPath(options.UnetWeights), Sha256OfFile(options.UnetWeights)),
            Loras = options.Loras.Select(l => new ManifestLora(Path.GetFullPath(l.Path), l.Scale, Sha256OfFile(l.Path))).ToList(),
            Exporter = "CTCal.Export " + (typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "0"),
            CreatedUtc = DateTime.UtcNow.ToString("O"),
            Opset = OnnxGraph.Opset,
            IrVersion = (int)OnnxGraph.IrVersion,
            Fp16 = options.Fp16,
            Components = components,
        };
    }

    private static T? TryLoad<T>(string path, Func<string, T> load) where T : class => File.Exists(path) ? load(path) : null;

    private static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream)).ToLowerInvariant();
    }

    // model_index.json as Optimum's ONNX Runtime pipelines write and load it (optimum/onnxruntime/modeling_diffusion.py,
    // ORTPipeline): "_class_name" ORTStableDiffusionPipeline, which ORTDiffusionPipeline / ORTPipelineForText2Image map to
    // ORTStableDiffusionPipeline (they refuse diffusers' OnnxStableDiffusionPipeline name); the ONNX parts as
    // ["diffusers", "OnnxRuntimeModel"] (what ORTPipeline writes, and what diffusers' OnnxStableDiffusionPipeline loads);
    // tokenizer and scheduler as [library, class], the only entries ORTPipeline._from_pretrained instantiates (the ONNX
    // parts it finds by folder). The scheduler entry is taken from the source folder.
    private static JsonObject ModelIndex(string model, List<Part> parts)
    {
        JsonNode scheduler = new JsonArray("diffusers", "PNDMScheduler");
        string version = "0.27.2";
        string source = Path.Combine(model, "model_index.json");
        if (File.Exists(source))
        {
            try
            {
                var src = JsonNode.Parse(File.ReadAllText(source));
                if (src?["scheduler"] is JsonArray s) scheduler = s.DeepClone();
                if (src?["_diffusers_version"] is JsonValue v && v.TryGetValue(out string? ver)) version = ver;
            }
            catch (JsonException e)
            {
                throw new ExportValidationException([$"'{source}' is not valid JSON: {e.Message}"], e);
            }
        }
        var index = new JsonObject
        {
            ["_class_name"] = "ORTStableDiffusionPipeline",
            ["_diffusers_version"] = version,
            ["feature_extractor"] = new JsonArray(null, null),
            ["requires_safety_checker"] = false,
            ["safety_checker"] = new JsonArray(null, null),
            ["scheduler"] = scheduler,
            ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        };
        foreach (var p in parts) index[p.Folder] = new JsonArray("diffusers", "OnnxRuntimeModel");
        return index;
    }
}

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
/// Turns a diffusers checkpoint (a folder with plain, variant or sharded safetensors, or an original single-file SD 1.x/2.x
/// checkpoint read through <see cref="CTCal.Core.Checkpoints.SingleFileCheckpoint"/>) into an ONNX model folder in the Optimum/OnnxStack layout:
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
    private static readonly string[] T5TokenizerFiles = ["spiece.model", "tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"];

    /// <param name="Indexed">Listed in model_index.json (the step-cache shallow graph is not: Optimum's pipelines know no such part).</param>
    private sealed record Part(string Folder, string ConfigJson, OnnxGraph Graph, ComponentWeights Weights, bool Indexed = true);

    private const ExportComponents Sd1Parts = ExportComponents.TextEncoder | ExportComponents.Unet | ExportComponents.VaeDecoder | ExportComponents.VaeEncoder;
    private const ExportComponents Sd3Parts = ExportComponents.TextEncoder | ExportComponents.TextEncoder2 | ExportComponents.TextEncoder3
        | ExportComponents.Transformer | ExportComponents.VaeDecoder | ExportComponents.VaeEncoder;

    private static readonly (ExportComponents Part, string Folder)[] PartFolders =
    [
        (ExportComponents.TextEncoder, "text_encoder"), (ExportComponents.TextEncoder2, "text_encoder_2"), (ExportComponents.TextEncoder3, "text_encoder_3"),
        (ExportComponents.Unet, "unet"),
        (ExportComponents.Transformer, "transformer"), (ExportComponents.VaeDecoder, "vae_decoder"), (ExportComponents.VaeEncoder, "vae_encoder"),
    ];

    private static IEnumerable<string> FolderNames(ExportComponents parts) => PartFolders.Where(p => parts.HasFlag(p.Part)).Select(p => p.Folder);

    /// <summary>
    /// Whether <paramref name="modelPath"/> is a Stable Diffusion 3 diffusers folder (a transformer, no UNet: no step-cache
    /// graphs, no UNet weights), decided from <c>model_index.json</c> or the component folders without reading weights.
    /// Single-file checkpoints are SD 1.x/2.x.
    /// </summary>
    public static bool IsSD3Source(string modelPath) => ExportSource.IsSD3Folder(modelPath);

    public static void Export(ExportOptions options, IProgress<ExportProgress>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        string model = Path.GetFullPath(options.ModelFolder);
        string output = Path.GetFullPath(options.OutputFolder).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        var opened = new List<ComponentWeights>();
        try
        {
            var parts = Prepare(options, model, output, opened, out var modelIndex, out var source);
            ct.ThrowIfCancellationRequested();
            WriteFolder(options, source, output, parts, modelIndex, progress, ct);
        }
        finally
        {
            foreach (var w in opened) w.Dispose();
        }
    }

    // Everything that can be checked without writing: paths, configs, weight files, tensors, LoRAs.
    private static List<Part> Prepare(ExportOptions options, string model, string output, List<ComponentWeights> opened, out JsonObject modelIndex,
        out ExportSource source)
    {
        modelIndex = new JsonObject();
        var problems = new List<string>();
        if (options.Components == ExportComponents.None) throw new ExportValidationException(["no components selected"]);
        if (!Enum.IsDefined(options.Precision))
            throw new ExportValidationException([$"precision value {(int)options.Precision} is not one of {string.Join(", ", OnnxModelManifest.Precisions)}"]);
        if (!Enum.IsDefined(options.Optimize))
            throw new ExportValidationException([$"optimize value {(int)options.Optimize} is not one of {string.Join(", ", OnnxModelManifest.Optimizations)}"]);
        // UNet, VAE and SD3 transformer graphs take the profile's fused contrib operators; text encoders and T5 stay plain.
        var fused = FusedOps.For(options.Optimize);
        if (options.Variant is { } variant && (variant.Length == 0 || variant.IndexOfAny(['/', '\\', '.']) >= 0))
            throw new ExportValidationException([$"variant '{variant}' must be a plain name such as fp16"]);
        if (PathGuard.Overlaps(output, model))
            throw new ExportValidationException([$"output folder '{output}' must not be, contain or lie inside the model folder '{model}'"]);
        source = ExportSource.Open(model, options, problems) ?? throw new ExportValidationException(problems);
        var src = source;
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any()
            && !File.Exists(Path.Combine(output, ManifestFileName)) && !options.Force)
            problems.Add($"output folder '{output}' exists, is not empty and was not written by this exporter (no {ManifestFileName}); pass Force to replace it");
        if (File.Exists(output)) problems.Add($"output path '{output}' is a file");
        if (options.TrainingMethod is { } method && !OnnxModelManifest.Methods.Contains(method))
            problems.Add($"training method '{method}' is not one of {string.Join(", ", OnnxModelManifest.Methods)}");
        if (options.TrainingSteps is < 0) problems.Add($"training steps must be >= 0, got {options.TrainingSteps}");
        string? unetReplacement = options.UnetWeights is { } u ? Path.GetFullPath(u) : null;
        bool sd3 = src.IsSD3;
        var familyParts = sd3 ? Sd3Parts : Sd1Parts;
        if (options.Components != ExportComponents.All && (options.Components & ~familyParts) is var foreign && foreign != ExportComponents.None)
            problems.Add($"components {string.Join(", ", FolderNames(foreign))}: not part of {(sd3 ? "an SD3" : "an SD 1.x/2.x")} model " +
                $"(its parts: {string.Join(", ", FolderNames(familyParts))})");
        if (sd3 && options.UnetWeights is not null)
            problems.Add($"UNet weights '{options.UnetWeights}' were given, but '{model}' is an SD3 model (a transformer, no UNet)");

        var loras = new Dictionary<string, Dictionary<string, List<LoraDelta>>>(StringComparer.Ordinal);
        foreach (var spec in options.Loras)
        {
            try
            {
                foreach (var (component, byWeight) in LoraFile.Load(Path.GetFullPath(spec.Path), spec.Scale,
                             c => src.WeightNames(c, c == LoraFile.UNet ? unetReplacement : null)))
                {
                    if (sd3 && component == LoraFile.UNet)
                    {
                        problems.Add($"LoRA '{spec.Path}' adapts UNet modules (keys without a transformer. or text_encoder. prefix, or kohya lora_unet_ keys, " +
                            $"e.g. '{byWeight.Values.First()[0].Module}'), but '{model}' is an SD3 model (a transformer, no UNet)");
                        continue;
                    }
                    if (!sd3 && component is LoraFile.Transformer or LoraFile.TextEncoder2)
                    {
                        problems.Add($"LoRA '{spec.Path}' adapts an SD3 {component} ({component}.* keys), but '{model}' is an SD 1.x/2.x model");
                        continue;
                    }
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
        if (loras.ContainsKey(LoraFile.Transformer) && !options.Components.HasFlag(ExportComponents.Transformer))
            problems.Add("a LoRA updates the transformer, but transformer is not among the exported components");
        if (loras.ContainsKey(LoraFile.TextEncoder2) && !options.Components.HasFlag(ExportComponents.TextEncoder2))
            problems.Add("a LoRA updates text_encoder_2, but text_encoder_2 is not among the exported components");
        if (options.Components.HasFlag(ExportComponents.TextEncoder) && src.Checkpoint is { TokenizerOrNull: null } checkpoint)
            problems.Add($"'{checkpoint.Path}' carries no tokenizer, which the exported folder needs: give a folder with the CLIP BPE files " +
                "vocab.json and merges.txt (--tokenizer), or a config folder with tokenizer/");

        var parts = new List<Part>();
        void Add(string folder, string component, Func<string, string, OnnxGraph> build, string? replacement, string loraComponent)
        {
            string? json = src.ConfigJson(component);
            if (json is null)
            {
                problems.Add($"missing '{src.ConfigOrigin(component)}'");
                return;
            }
            OnnxGraph graph;
            try
            {
                graph = build(json, src.ConfigOrigin(component));
            }
            catch (DiffusersConfigException e)
            {
                problems.Add(e.Message);
                return;
            }
            // float16 compute is a pass over the built graph; T5 stays float32 compute over float16 weights (its residual
            // stream outgrows float16: transformers clamps it in T5LayerFF when run in half precision).
            if (options.Precision == ExportPrecision.Fp16 && folder != "text_encoder_3") Float16Compute.Apply(graph);
            var tensors = src.OpenWeights(component, replacement, problems);
            if (tensors is null) return;
            var weights = new ComponentWeights(folder, tensors, loras.GetValueOrDefault(loraComponent));
            opened.Add(weights);
            problems.AddRange(weights.Check(graph.Weights, graph.UnusedWeights));
            parts.Add(new Part(folder, json, graph, weights));
        }

        if (sd3)
        {
            if (options.Components.HasFlag(ExportComponents.TextEncoder))
                Add("text_encoder", "text_encoder", (json, file) => TextEncoderGraph.BuildWithProjection(ClipTextConfig.Parse(json, file), "text_encoder", options.Fp16), null, "text_encoder");
            if (options.Components.HasFlag(ExportComponents.TextEncoder2))
                Add("text_encoder_2", "text_encoder_2", (json, file) => TextEncoderGraph.BuildWithProjection(ClipTextConfig.Parse(json, file), "text_encoder_2", options.Fp16), null, "text_encoder_2");
            // T5 is optional: taken by default when the source has it, refused as missing only when asked for by name.
            bool t5 = options.Components.HasFlag(ExportComponents.TextEncoder3)
                && (options.Components != ExportComponents.All || src.ConfigJson("text_encoder_3") is not null);
            if (t5)
                Add("text_encoder_3", "text_encoder_3", (json, file) => T5EncoderGraph.Build(T5Config.Parse(json, file), options.Fp16), null, "text_encoder_3");
            if (options.Components.HasFlag(ExportComponents.Transformer))
                Add("transformer", "transformer", (json, file) => SD3TransformerGraph.Build(SD3TransformerConfig.Parse(json, file), options.Fp16, fused), null, "transformer");
        }
        else if (options.Components.HasFlag(ExportComponents.TextEncoder))
            Add("text_encoder", "text_encoder", (json, file) => TextEncoderGraph.Build(ClipTextConfig.Parse(json, file), options.Fp16), null, LoraFile.TextEncoder);
        if (options.StepCacheBranch is { } branch && (sd3 || !options.Components.HasFlag(ExportComponents.Unet)))
            problems.Add(sd3
                ? $"step-cache branch {branch}: step caching is for UNet models, but '{model}' is an SD3 model (a transformer)"
                : $"step-cache branch {branch}: the step-cache graphs are UNet graphs, but unet is not among the exported components");
        if (!sd3 && options.Components.HasFlag(ExportComponents.Unet))
        {
            // The step-cache branch is checked against the UNet config before anything is built (the builders throw on it).
            bool branchOk = true;
            Add("unet", "unet", (json, file) =>
            {
                var config = UNetConfig.Parse(json, file);
                if (options.StepCacheBranch is { } b && (b < 1 || b > UNetGraph.UpLayerCount(config)))
                {
                    problems.Add($"step-cache branch {b}: must be 1 to {UNetGraph.UpLayerCount(config)} for '{file}' " +
                        $"({config.BlockOutChannels.Length} up blocks x {config.LayersPerBlock + 1} layers)");
                    branchOk = false;
                    return UNetGraph.Build(config, options.Fp16, fused);
                }
                return UNetGraph.Build(config, options.Fp16, fused, options.StepCacheBranch);
            }, unetReplacement, LoraFile.UNet);
            if (options.StepCacheBranch is { } cacheBranch && branchOk && parts.LastOrDefault() is { Folder: "unet" } unetPart)
            {
                var shallow = UNetGraph.BuildShallow(UNetConfig.Parse(unetPart.ConfigJson, src.ConfigOrigin("unet")), cacheBranch, options.Fp16, fused);
                if (options.Precision == ExportPrecision.Fp16) Float16Compute.Apply(shallow); // the same pass as the full UNet's
                problems.AddRange(unetPart.Weights.Check(shallow.Weights, shallow.UnusedWeights));
                parts.Add(new Part(ManifestStepCache.ShallowFolder, unetPart.ConfigJson, shallow, unetPart.Weights, Indexed: false));
            }
        }
        if (options.Components.HasFlag(ExportComponents.VaeDecoder))
            Add("vae_decoder", "vae", (json, file) => VaeGraphs.BuildDecoder(VaeConfig.Parse(json, file), options.Fp16, fused), null, "vae");
        if (options.Components.HasFlag(ExportComponents.VaeEncoder))
            Add("vae_encoder", "vae", (json, file) => VaeGraphs.BuildEncoder(VaeConfig.Parse(json, file), options.Fp16, fused), null, "vae");

        try
        {
            modelIndex = sd3 ? SD3ModelIndex(src, parts) : ModelIndex(src, parts);
        }
        catch (ExportValidationException e)
        {
            problems.AddRange(e.Problems);
        }
        if (problems.Count > 0) throw new ExportValidationException(problems.Distinct().ToList());
        return parts;
    }

    private static void WriteFolder(ExportOptions options, ExportSource source, string output, List<Part> parts, JsonObject modelIndex,
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
            File.WriteAllText(Path.Combine(dir, "config.json"), part.ConfigJson);
            componentsJson[part.Folder] = ComponentManifest(part, files);
            progress?.Report(new ExportProgress(part.Folder, "done", total, total));
            if (FaultPoints.IsArmed) FaultPoints.Reached($"export.part-written:{part.Folder}");
        }
        if (source.TokenizerFolder() is { } tokenizer) CopyFolder(tokenizer, Path.Combine(temp, "tokenizer"), TokenizerFiles);
        if (source.IsSD3)
        {
            CopyFolder(source.TokenizerFolder("tokenizer_2")!, Path.Combine(temp, "tokenizer_2"), TokenizerFiles);
            CopyFolder(source.TokenizerFolder("tokenizer_3")!, Path.Combine(temp, "tokenizer_3"), T5TokenizerFiles);
        }
        if (source.SchedulerJson() is { } scheduler)
        {
            Directory.CreateDirectory(Path.Combine(temp, "scheduler"));
            File.WriteAllText(Path.Combine(temp, "scheduler", "scheduler_config.json"), scheduler);
        }
        WriteJson(Path.Combine(temp, "model_index.json"), modelIndex);
        Manifest(options, source, componentsJson).Write(temp);
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
            ["precision"] = part.Graph.ComputesInFloat16 ? "fp16" : part.Graph.Fp16Weights ? "fp16-weights" : "fp32",
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
    private static OnnxModelManifest Manifest(ExportOptions options, ExportSource source, JsonObject components)
    {
        bool sd3 = source.IsSD3;
        UNetConfig? unet = !sd3 && source.ConfigJson("unet") is { } u ? UNetConfig.Parse(u, source.ConfigOrigin("unet")) : null;
        SD3TransformerConfig? transformer = sd3 && source.ConfigJson("transformer") is { } tr ? SD3TransformerConfig.Parse(tr, source.ConfigOrigin("transformer")) : null;
        ClipTextConfig? text = source.ConfigJson("text_encoder") is { } t ? ClipTextConfig.Parse(t, source.ConfigOrigin("text_encoder")) : null;
        VaeConfig? vae = source.ConfigJson("vae") is { } v ? VaeConfig.Parse(v, source.ConfigOrigin("vae")) : null;
        // SD3's flow-matching scheduler has no prediction_type: the family says what the transformer predicts.
        string? prediction = !sd3 && source.SchedulerJson() is { } s ? SchedulerConfig.Parse(s).PredictionType : null;
        string model = source.Path;
        int? native = (unet?.SampleSize ?? transformer?.SampleSize) is { } sample ? sample * (vae?.DownscaleFactor ?? 8) : null;
        bool merged = options.UnetWeights is not null || options.Loras.Count > 0;
        return new OnnxModelManifest
        {
            Family = sd3 ? ModelFamily.Sd3 : ModelFamily.Detect(unet, text),
            Width = native,
            Height = native,
            VaeScalingFactor = vae?.ScalingFactor,
            VaeShiftFactor = vae?.ShiftFactor is { } shift && shift != 0 ? shift : null,
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
            Precision = ExportPrecisionNames.Name(options.Precision),
            Optimize = ExportOptimizationNames.Name(options.Optimize),
            Components = components,
            StepCache = unet is not null && options.StepCacheBranch is { } branch ? StepCache(unet, branch) : null,
        };
    }

    /// <summary>The manifest's step-cache record: the feature's shape and the FLOPs of a full and a shallow call at the native size.</summary>
    private static ManifestStepCache StepCache(UNetConfig unet, int branch)
    {
        var (channels, downscale) = UNetGraph.FeatureShape(unet, branch);
        const int tokens = 77; // one CLIP window
        double full = UNetGraph.Flops(unet, unet.SampleSize, unet.SampleSize, tokens);
        double shallow = UNetGraph.Flops(unet, unet.SampleSize, unet.SampleSize, tokens, branch, shallow: true);
        return new ManifestStepCache(branch, channels, downscale, Math.Round(full / 1e9, 6), Math.Round(shallow / 1e9, 6));
    }

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
    // model_index.json of an SD3 folder as Optimum writes it for ORTStableDiffusion3Pipeline: the ONNX parts as
    // ["diffusers", "OnnxRuntimeModel"], the two CLIP tokenizers and (when the source has it) T5's, the scheduler from the source.
    private static JsonObject SD3ModelIndex(ExportSource source, List<Part> parts)
    {
        var (scheduler, version) = source.ModelIndexEntries("FlowMatchEulerDiscreteScheduler");
        var index = new JsonObject
        {
            ["_class_name"] = ModelFolder.SD3OnnxPipelineClass,
            ["_diffusers_version"] = version,
            ["scheduler"] = scheduler,
            ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
            ["tokenizer_2"] = new JsonArray("transformers", "CLIPTokenizer"),
        };
        if (source.TokenizerFolder("tokenizer_3") is { } t5 && Directory.Exists(t5)) index["tokenizer_3"] = new JsonArray("transformers", "T5TokenizerFast");
        foreach (var p in parts) index[p.Folder] = new JsonArray("diffusers", "OnnxRuntimeModel");
        return index;
    }

    private static JsonObject ModelIndex(ExportSource source, List<Part> parts)
    {
        var (scheduler, version) = source.ModelIndexEntries();
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
        foreach (var p in parts.Where(p => p.Indexed)) index[p.Folder] = new JsonArray("diffusers", "OnnxRuntimeModel");
        return index;
    }
}

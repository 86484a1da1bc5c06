using System.Text.Json;
using CTCal.Core.Diffusers;
using CTCal.Core.IO;
using CTCal.Core.Safetensors;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;

namespace CTCal.Export.Fixtures;

/// <summary>What <see cref="RandomModelWriter.Write"/> wrote: the folder and the weight bytes per component.</summary>
/// <param name="Folder">The finished diffusers folder.</param>
/// <param name="WeightBytes">Bytes of tensor data per component (unet, vae, text_encoder), headers not counted.</param>
public sealed record RandomModelResult(string Folder, IReadOnlyDictionary<string, long> WeightBytes)
{
    /// <summary>All components' tensor bytes together.</summary>
    public long TotalWeightBytes => WeightBytes.Values.Sum();
}

/// <summary>
/// Writes a complete diffusers pipeline folder for a <see cref="ReferenceModel"/> (the published configs, or a scaled-down
/// copy of them in tests) with seeded random weights (<see cref="RandomWeights"/>): <c>model_index.json</c>,
/// <c>scheduler/</c>, <c>tokenizer/</c>, and <c>unet/</c>, <c>vae/</c>, <c>text_encoder/</c> each with its config and
/// safetensors weights. Tensor names and shapes come from the exporter's graph builders (<see cref="UNetGraph"/>,
/// <see cref="VaeGraphs"/>, <see cref="TextEncoderGraph"/>), which hold every diffusers/transformers state-dict key the
/// networks use, so the exporter and the trainer (a strict name-for-name load) read the folder as they read a real one.
/// <para>Tensors are generated and written one at a time (memory stays flat). The folder is built as a hidden sibling
/// (<c>.&lt;name&gt;.partial-&lt;id&gt;</c>) and renamed into place when complete; an existing non-empty output folder is
/// refused, so nothing is ever written into a folder that something may be reading.</para>
/// </summary>
public static class RandomModelWriter
{
    /// <summary>The components <see cref="Write"/> can generate.</summary>
    public static IReadOnlyList<string> ComponentNames { get; } = ["unet", "vae", "text_encoder"];

    /// <summary>The tensors (diffusers names and shapes) of <paramref name="component"/> of <paramref name="model"/>.</summary>
    /// <exception cref="ArgumentException">an unknown component.</exception>
    public static IReadOnlyList<WeightRequirement> Tensors(ReferenceModel model, string component)
    {
        ArgumentNullException.ThrowIfNull(model);
        return component switch
        {
            "unet" => UNetGraph.Build(model.Unet, fp16Weights: false).Weights.ToList(),
            "vae" => VaeGraphs.BuildEncoder(model.Vae, false).Weights.Concat(VaeGraphs.BuildDecoder(model.Vae, false).Weights)
                .DistinctBy(w => w.Name, StringComparer.Ordinal).ToList(),
            "text_encoder" => TextEncoderGraph.Build(model.TextEncoder, false).Weights.ToList(),
            _ => throw new ArgumentException($"unknown component '{component}' (known: {string.Join(", ", ComponentNames)})", nameof(component)),
        };
    }

    /// <summary>
    /// Writes the folder <paramref name="outputFolder"/> (which must not exist or be empty).
    /// </summary>
    /// <param name="model">The configuration.</param>
    /// <param name="outputFolder">The folder to create.</param>
    /// <param name="seed">Weight seed: the same seed gives byte-identical weights.</param>
    /// <param name="tokenizerFolder">A folder with the CLIP BPE <c>vocab.json</c> and <c>merges.txt</c>, copied into
    /// <c>tokenizer/</c>; every id in it must be below the text encoder's <c>vocab_size</c>.</param>
    /// <param name="dtype">F32 or F16 weights (the file names stay the plain ones).</param>
    /// <param name="components">Which of unet, vae, text_encoder get weights and config (null: all three).</param>
    /// <param name="progress">Told the component and tensor count as each component starts.</param>
    /// <exception cref="IOException">the output folder is not empty, or a write failed.</exception>
    /// <exception cref="InvalidDataException">the tokenizer is missing a file or holds ids the text encoder has no row for; names the file.</exception>
    public static RandomModelResult Write(ReferenceModel model, string outputFolder, ulong seed, string tokenizerFolder,
        SafetensorsDType dtype = SafetensorsDType.F32, IReadOnlyCollection<string>? components = null, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(outputFolder);
        ArgumentNullException.ThrowIfNull(tokenizerFolder);
        components ??= ComponentNames;
        foreach (string c in components)
        {
            if (!ComponentNames.Contains(c)) throw new ArgumentException($"unknown component '{c}' (known: {string.Join(", ", ComponentNames)})", nameof(components));
        }

        string vocab = Path.Combine(tokenizerFolder, "vocab.json");
        string merges = Path.Combine(tokenizerFolder, "merges.txt");
        CheckTokenizer(vocab, merges, model.TextEncoder.VocabSize);

        var bytes = new Dictionary<string, long>(StringComparer.Ordinal);
        string output = InStaging(outputFolder, staging =>
        {
            AtomicFile.WriteText(Path.Combine(staging, "model_index.json"), model.ModelIndexJson.Trim() + "\n");
            Directory.CreateDirectory(Path.Combine(staging, "scheduler"));
            AtomicFile.WriteText(Path.Combine(staging, "scheduler", "scheduler_config.json"), model.SchedulerConfigJson.Trim() + "\n");
            Directory.CreateDirectory(Path.Combine(staging, "tokenizer"));
            AtomicFile.Copy(vocab, Path.Combine(staging, "tokenizer", "vocab.json"));
            AtomicFile.Copy(merges, Path.Combine(staging, "tokenizer", "merges.txt"));
            AtomicFile.WriteText(Path.Combine(staging, "tokenizer", "special_tokens_map.json"), model.SpecialTokensMapJson.Trim() + "\n");
            AtomicFile.WriteText(Path.Combine(staging, "tokenizer", "tokenizer_config.json"), model.TokenizerConfigJson.Trim() + "\n");

            foreach (string component in ComponentNames.Where(components.Contains))
            {
                var tensors = Tensors(model, component);
                progress?.Invoke($"{component}: {tensors.Count} tensors, {RandomWeights.ByteCount(tensors, dtype) / 1e6:F1} MB");
                string folder = Path.Combine(staging, component);
                Directory.CreateDirectory(folder);
                string config = component switch
                {
                    "unet" => model.UnetConfigJson,
                    "vae" => model.VaeConfigJson,
                    _ => model.TextEncoderConfigJson,
                };
                AtomicFile.WriteText(Path.Combine(folder, "config.json"), config.Trim() + "\n");
                string weights = component == "text_encoder" ? "model.safetensors" : "diffusion_pytorch_model.safetensors";
                RandomWeights.Write(Path.Combine(folder, weights), tensors, seed, dtype);
                bytes[component] = RandomWeights.ByteCount(tensors, dtype);
            }
        });
        return new RandomModelResult(output, bytes);
    }

    /// <summary>
    /// The tensors (diffusers names and shapes) of an SD3 transformer: <see cref="SD3TransformerGraph"/>'s weights plus the
    /// last (context_pre_only) block's <c>attn.add_q_proj</c>, which diffusers creates and saves although nothing uses it
    /// (the graph lists it as unused), so the trainer's strict load and the byte count match a real folder.
    /// </summary>
    public static IReadOnlyList<WeightRequirement> TransformerTensors(SD3TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var graph = SD3TransformerGraph.Build(config, fp16Weights: false);
        string unused = $"transformer_blocks.{config.NumLayers - 1}.attn.add_q_proj";
        WeightRequirement[] created = [new(unused + ".weight", [config.InnerDim, config.InnerDim]), new(unused + ".bias", [config.InnerDim])];
        return graph.Weights.Concat(created.Where(w => graph.UnusedWeights.Contains(w.Name))).ToList();
    }

    /// <summary>
    /// Writes a folder holding only <c>transformer/</c> (config.json and seeded random weights) of the SD3 transformer
    /// <paramref name="configJson"/> describes, e.g. <see cref="ReferenceModels.Sd3MediumTransformerConfigJson"/>: what the
    /// exporter (<see cref="ExportComponents.Transformer"/>) and the trainer's <c>SD3Transformer2DModel</c> read. Built and
    /// renamed into place like <see cref="Write"/>; tensors are streamed one at a time.
    /// </summary>
    /// <exception cref="IOException">the output folder is not empty, or a write failed.</exception>
    /// <exception cref="DiffusersConfigException">the config is not a valid SD3 transformer config.</exception>
    public static RandomModelResult WriteTransformer(string configJson, string outputFolder, ulong seed,
        SafetensorsDType dtype = SafetensorsDType.F32, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(configJson);
        ArgumentNullException.ThrowIfNull(outputFolder);
        var tensors = TransformerTensors(SD3TransformerConfig.Parse(configJson));
        long bytes = RandomWeights.ByteCount(tensors, dtype);
        progress?.Invoke($"transformer: {tensors.Count} tensors, {bytes / 1e6:F1} MB");
        string output = InStaging(outputFolder, staging =>
        {
            string folder = Path.Combine(staging, "transformer");
            Directory.CreateDirectory(folder);
            AtomicFile.WriteText(Path.Combine(folder, "config.json"), configJson.Trim() + "\n");
            RandomWeights.Write(Path.Combine(folder, "diffusion_pytorch_model.safetensors"), tensors, seed, dtype);
        });
        return new RandomModelResult(output, new Dictionary<string, long>(StringComparer.Ordinal) { ["transformer"] = bytes });
    }

    // Refuses a non-empty output folder, fills a hidden sibling staging folder and renames it into place; returns the full path.
    private static string InStaging(string outputFolder, Action<string> fill)
    {
        string output = Path.GetFullPath(outputFolder).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
            throw new IOException($"{output}: the output folder exists and is not empty; choose a new folder");
        string parent = Path.GetDirectoryName(output) ?? throw new IOException($"{output}: has no parent folder");
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(output)}.partial-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            fill(staging);
            if (Directory.Exists(output)) Directory.Delete(output); // empty, checked above
            Directory.Move(staging, output);
            return output;
        }
        catch
        {
            try { Directory.Delete(staging, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Both files exist and every id in vocab.json is below <paramref name="vocabSize"/>.</summary>
    private static void CheckTokenizer(string vocab, string merges, int vocabSize)
    {
        if (!File.Exists(vocab)) throw new InvalidDataException($"{vocab}: missing (the tokenizer folder needs the CLIP BPE vocab.json and merges.txt)");
        if (!File.Exists(merges)) throw new InvalidDataException($"{merges}: missing (the tokenizer folder needs the CLIP BPE vocab.json and merges.txt)");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(vocab));
            int max = -1;
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                    throw new InvalidDataException($"{vocab}: token \"{entry.Name}\": expected a non-negative integer id, found {entry.Value.GetRawText()}");
                max = Math.Max(max, id);
            }
            if (max >= vocabSize)
                throw new InvalidDataException($"{vocab}: holds id {max}, but the text encoder's vocab_size is {vocabSize} (its token embedding has no row for it)");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{vocab}: invalid JSON ({e.Message})", e);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidDataException($"{vocab}: expected a JSON object of token -> id ({e.Message})", e);
        }
    }
}

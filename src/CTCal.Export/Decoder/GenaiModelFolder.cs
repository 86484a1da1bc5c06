using System.Globalization;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Text;
using CTCal.Export.Onnx;

namespace CTCal.Export.Decoder;

/// <summary>
/// Writes an ONNX Runtime GenAI model folder for <see cref="TinyDecoderConfig"/>'s transformer: <c>model.onnx</c> (CTCal's
/// own ONNX writer), <c>genai_config.json</c> (decoder type "llama", greedy search), and the tokenizer
/// (<c>tokenizer.json</c>, <c>tokenizer_config.json</c> from <see cref="ByteLevelBpe"/>).
/// </summary>
public static class GenaiModelFolder
{
    /// <summary>The decoder's file name inside the folder.</summary>
    public const string ModelFile = "model.onnx";

    /// <summary>The trainer's weights file (input of <see cref="WriteFromTraining"/>).</summary>
    public const string WeightsFile = "decoder.safetensors";

    /// <summary>The trainer's config file beside <see cref="WeightsFile"/>.</summary>
    public const string ConfigFile = "decoder_config.json";

    /// <summary>Writes the folder from weights held in memory; every weight of <paramref name="config"/> must be present with its size.</summary>
    public static void Write(string directory, TinyDecoderConfig config, IReadOnlyDictionary<string, float[]> weights, ByteLevelBpe tokenizer, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(tokenizer);
        config.Validate();
        if (tokenizer.VocabSize != config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.VocabSize} tokens but the decoder's vocab_size is {config.VocabSize}");
        if (maxLength > config.ContextLength)
            throw new ArgumentException($"max_length {maxLength} exceeds the decoder's context_length {config.ContextLength}");
        foreach (var (name, shape) in config.WeightShapes())
        {
            long expected = shape.Aggregate(1L, (a, b) => a * b);
            if (!weights.TryGetValue(name, out var values)) throw new ArgumentException($"weight '{name}' is missing");
            if (values.Length != expected) throw new ArgumentException($"weight '{name}' has {values.Length} values, expected {expected} ([{string.Join(", ", shape)}])");
        }

        Directory.CreateDirectory(directory);
        var graph = TinyDecoderGraph.Build(config);
        OnnxModelWriter.Write(graph, new InMemoryWeights(weights), directory, OnnxModelWriter.DefaultExternalDataThreshold);
        AtomicFile.WriteText(Path.Combine(directory, "genai_config.json"), GenaiConfigJson(config, maxLength));
        AtomicFile.WriteText(Path.Combine(directory, "tokenizer.json"), tokenizer.ToTokenizerJson());
        AtomicFile.WriteText(Path.Combine(directory, "tokenizer_config.json"), ByteLevelBpe.TokenizerConfigJson(config.ContextLength));
    }

    /// <summary>
    /// Writes the folder from a trainer output folder holding <see cref="WeightsFile"/>, <see cref="ConfigFile"/> and
    /// <c>tokenizer.json</c>.
    /// </summary>
    public static void WriteFromTraining(string trainingFolder, string directory, int maxLength)
    {
        string configPath = Path.Combine(trainingFolder, ConfigFile);
        string weightsPath = Path.Combine(trainingFolder, WeightsFile);
        string tokenizerPath = Path.Combine(trainingFolder, "tokenizer.json");
        foreach (string path in new[] { configPath, weightsPath, tokenizerPath })
        {
            if (!File.Exists(path)) throw new FileNotFoundException($"{path} is missing (expected a ctcal-train subjects-model output folder)", path);
        }
        var config = TinyDecoderConfig.FromJson(File.ReadAllText(configPath), configPath);
        var tokenizer = ByteLevelBpe.FromTokenizerJson(File.ReadAllText(tokenizerPath));
        var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
        using (var file = SafetensorsFile.Open(weightsPath))
        {
            foreach (var (name, _) in config.WeightShapes())
            {
                if (!file.Contains(name)) throw new InvalidDataException($"{weightsPath}: tensor '{name}' is missing");
                weights[name] = file.ReadAsFloat32(name);
            }
        }
        Write(directory, config, weights, tokenizer, maxLength);
    }

    /// <summary>Seeded random weights (for tests of the runtime path before any training).</summary>
    public static Dictionary<string, float[]> RandomWeights(TinyDecoderConfig config, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        var rng = new Random(seed);
        var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var (name, shape) in config.WeightShapes())
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            bool isNormWeight = name.EndsWith(".weight", StringComparison.Ordinal) && shape.Length == 1;
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = isNormWeight ? 1f : shape.Length == 1 ? 0f : (float)((rng.NextDouble() * 2 - 1) * 0.1);
            }
            weights[name] = values;
        }
        return weights;
    }

    /// <summary>The genai_config.json of the folder: a "llama"-type decoder with GenAI's default names, greedy search.</summary>
    public static string GenaiConfigJson(TinyDecoderConfig config, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(config);
        string I(int v) => v.ToString(CultureInfo.InvariantCulture);
        return $$"""
        {
          "model": {
            "bos_token_id": {{ByteLevelBpe.EndOfTextId}},
            "context_length": {{I(config.ContextLength)}},
            "decoder": {
              "session_options": {
                "log_id": "onnxruntime-genai",
                "intra_op_num_threads": 1,
                "provider_options": []
              },
              "filename": "{{ModelFile}}",
              "head_size": {{I(config.HeadSize)}},
              "hidden_size": {{I(config.Hidden)}},
              "inputs": {
                "input_ids": "{{TinyDecoderGraph.InputIds}}",
                "attention_mask": "{{TinyDecoderGraph.AttentionMask}}",
                "position_ids": "{{TinyDecoderGraph.PositionIds}}",
                "past_key_names": "{{TinyDecoderGraph.PastKey}}",
                "past_value_names": "{{TinyDecoderGraph.PastValue}}"
              },
              "outputs": {
                "logits": "{{TinyDecoderGraph.Logits}}",
                "present_key_names": "{{TinyDecoderGraph.PresentKey}}",
                "present_value_names": "{{TinyDecoderGraph.PresentValue}}"
              },
              "num_attention_heads": {{I(config.Heads)}},
              "num_hidden_layers": {{I(config.Layers)}},
              "num_key_value_heads": {{I(config.Heads)}}
            },
            "eos_token_id": {{ByteLevelBpe.EndOfTextId}},
            "pad_token_id": {{ByteLevelBpe.EndOfTextId}},
            "type": "llama",
            "vocab_size": {{I(config.VocabSize)}}
          },
          "search": {
            "diversity_penalty": 0.0,
            "do_sample": false,
            "early_stopping": true,
            "length_penalty": 1.0,
            "max_length": {{I(maxLength)}},
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": false,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0
          }
        }
        """;
    }
}

using System.Text.Json;

namespace CTCal.Core.Models;

/// <summary>
/// The sizes of CTCal's tiny decoder-only transformer (pre-LayerNorm blocks, learned token and position embeddings, GELU
/// MLP, logits tied to the token embedding). The trainer's TorchSharp module and the ONNX graph use the same weight names:
/// <c>tok_emb.weight</c> [V, D], <c>pos_emb.weight</c> [P, D], per layer <c>layers.i.ln1/ln2.weight|bias</c>,
/// <c>layers.i.attn.q|k|v|o.weight</c> [D, D] + <c>.bias</c>, <c>layers.i.mlp.fc1.weight</c> [F, D],
/// <c>layers.i.mlp.fc2.weight</c> [D, F] (+ biases), and <c>ln_f.weight|bias</c>.
/// </summary>
/// <param name="VocabSize">V: tokens.</param>
/// <param name="Hidden">D: model width.</param>
/// <param name="Heads">Attention heads (D must divide by it).</param>
/// <param name="Layers">Transformer blocks.</param>
/// <param name="FeedForward">F: MLP width.</param>
/// <param name="ContextLength">P: the longest sequence (prompt + answer) the position table covers.</param>
public sealed record TinyDecoderConfig(int VocabSize, int Hidden, int Heads, int Layers, int FeedForward, int ContextLength)
{
    /// <summary>D / heads.</summary>
    public int HeadSize => Hidden / Heads;

    /// <summary>Throws naming the first invalid size.</summary>
    public void Validate()
    {
        if (VocabSize < 2) throw new ArgumentException($"vocab_size {VocabSize} must be at least 2");
        if (Hidden < 1 || Heads < 1 || Hidden % Heads != 0) throw new ArgumentException($"hidden {Hidden} must be a positive multiple of heads {Heads}");
        if (Layers < 1) throw new ArgumentException($"layers {Layers} must be at least 1");
        if (FeedForward < 1) throw new ArgumentException($"feed_forward {FeedForward} must be at least 1");
        if (ContextLength < 2) throw new ArgumentException($"context_length {ContextLength} must be at least 2");
    }

    /// <summary>Every weight's name and shape, in a fixed order.</summary>
    public IReadOnlyList<(string Name, long[] Shape)> WeightShapes()
    {
        var list = new List<(string, long[])>
        {
            ("tok_emb.weight", [VocabSize, Hidden]),
            ("pos_emb.weight", [ContextLength, Hidden]),
        };
        for (int i = 0; i < Layers; i++)
        {
            string p = $"layers.{i}";
            list.Add(($"{p}.ln1.weight", [Hidden]));
            list.Add(($"{p}.ln1.bias", [Hidden]));
            foreach (string m in new[] { "q", "k", "v", "o" })
            {
                list.Add(($"{p}.attn.{m}.weight", [Hidden, Hidden]));
                list.Add(($"{p}.attn.{m}.bias", [Hidden]));
            }
            list.Add(($"{p}.ln2.weight", [Hidden]));
            list.Add(($"{p}.ln2.bias", [Hidden]));
            list.Add(($"{p}.mlp.fc1.weight", [FeedForward, Hidden]));
            list.Add(($"{p}.mlp.fc1.bias", [FeedForward]));
            list.Add(($"{p}.mlp.fc2.weight", [Hidden, FeedForward]));
            list.Add(($"{p}.mlp.fc2.bias", [Hidden]));
        }
        list.Add(("ln_f.weight", [Hidden]));
        list.Add(("ln_f.bias", [Hidden]));
        return list;
    }

    /// <summary>The config as the small JSON file the trainer writes beside its safetensors (<c>decoder_config.json</c>).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads <see cref="ToJson"/>'s output; throws naming <paramref name="source"/> when it does not parse.</summary>
    public static TinyDecoderConfig FromJson(string json, string source)
    {
        TinyDecoderConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<TinyDecoderConfig>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not a decoder config ({e.Message})", e);
        }
        if (config is null) throw new InvalidDataException($"{source}: empty decoder config");
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{source}: {e.Message}", e);
        }
        return config;
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };
}

using CTCal.Core.Models;
using CTCal.Export.Onnx;
using CTCal.Export.Onnx.Proto;
using static CTCal.Export.Onnx.OnnxGraph;

namespace CTCal.Export.Decoder;

/// <summary>
/// The ONNX graph of <see cref="TinyDecoderConfig"/>'s transformer with the inputs and outputs ONNX Runtime GenAI's
/// decoder-only models use: <c>input_ids</c>, <c>attention_mask</c> [batch, total], <c>position_ids</c> and
/// <c>past_key_values.i.key|value</c> [batch, heads, past, head size] in; <c>logits</c> [batch, sequence, vocab] and
/// <c>present.i.key|value</c> [batch, heads, total, head size] out (all int64 / float32). Attention is causal over the
/// cache plus the new tokens and masked by <c>attention_mask</c> (so left-padded batches work).
/// </summary>
public static class TinyDecoderGraph
{
    /// <summary>Input/output names (GenAI's defaults, written into genai_config.json too).</summary>
    public const string InputIds = "input_ids", AttentionMask = "attention_mask", PositionIds = "position_ids", Logits = "logits";

    /// <summary>The past key name pattern (<c>%d</c> = layer).</summary>
    public const string PastKey = "past_key_values.%d.key", PastValue = "past_key_values.%d.value";

    /// <summary>The present key name pattern (<c>%d</c> = layer).</summary>
    public const string PresentKey = "present.%d.key", PresentValue = "present.%d.value";

    private static string Layer(string pattern, int i) => pattern.Replace("%d", i.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);

    /// <summary>Builds the graph (weights referenced by name, streamed at write time).</summary>
    public static OnnxGraph Build(TinyDecoderConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        long d = config.Hidden, h = config.Heads, hs = config.HeadSize;
        var g = new OnnxGraph("ctcal_tiny_decoder", fp16Weights: false);
        const TensorProto.Types.DataType I64 = TensorProto.Types.DataType.Int64, F32 = TensorProto.Types.DataType.Float;
        string ids = g.Input(InputIds, I64, "batch_size", "sequence_length");
        string mask = g.Input(AttentionMask, I64, "batch_size", "total_sequence_length");
        string pos = g.Input(PositionIds, I64, "batch_size", "sequence_length");
        var pastK = new string[config.Layers];
        var pastV = new string[config.Layers];
        for (int i = 0; i < config.Layers; i++)
        {
            pastK[i] = g.Input(Layer(PastKey, i), F32, "batch_size", h, "past_sequence_length", hs);
            pastV[i] = g.Input(Layer(PastValue, i), F32, "batch_size", h, "past_sequence_length", hs);
        }

        string tokEmb = g.Weight("tok_emb.weight", config.VocabSize, d);
        string x = g.Add(g.Op("Gather", [tokEmb, ids], null, Attr("axis", 0L)),
            g.Op("Gather", [g.Weight("pos_emb.weight", config.ContextLength, d), pos], null, Attr("axis", 0L))); // [B, S, D]

        // additive mask [B, 1, S, T]: key j visible to query i when j <= past + i and attention_mask[b, j] == 1
        string seqLen = g.ShapeOf(ids, 1, 2);                 // [1] S
        string totalLen = g.ShapeOf(mask, 1, 2);              // [1] T
        string pastLen = g.Sub(totalLen, seqLen);             // [1]
        string zero = g.ScalarInt64(0), one = g.ScalarInt64(1);
        string tScalar = g.Op("Squeeze", [totalLen, g.ConstInt64(0)]);
        string pScalar = g.Op("Squeeze", [pastLen, g.ConstInt64(0)]);
        string keyIdx = g.Op("Range", [zero, tScalar, one]);  // [T]
        string queryIdx = g.Op("Range", [pScalar, tScalar, one]); // [S]
        string causal = g.Op("LessOrEqual", [g.Unsqueeze(keyIdx, 0), g.Unsqueeze(queryIdx, 1)]); // [S, T]
        string padOk = g.Op("Cast", [g.Unsqueeze(mask, 1, 2)], null, Attr("to", (long)TensorProto.Types.DataType.Bool)); // [B, 1, 1, T]
        string visible = g.Op("And", [g.Unsqueeze(causal, 0, 1), padOk]); // [B, 1, S, T]
        string bias = g.Op("Where", [visible, g.ScalarFloat(0f), g.ScalarFloat(-1e9f)]);

        for (int i = 0; i < config.Layers; i++)
        {
            string p = $"layers.{i}";
            g.Scope = p;
            string a = g.LayerNorm(x, p + ".ln1", d, 1e-5);
            string Heads(string t) => g.Transpose(g.Reshape(t, 0, 0, h, hs), 0, 2, 1, 3); // [B, h, S, hs]
            string q = Heads(Linear3(g, a, p + ".attn.q", d, d));
            string k = g.Concat(2, pastK[i], Heads(Linear3(g, a, p + ".attn.k", d, d))); // [B, h, T, hs]
            string v = g.Concat(2, pastV[i], Heads(Linear3(g, a, p + ".attn.v", d, d)));
            g.Output(k, Layer(PresentKey, i), F32, "batch_size", h, "total_sequence_length", hs);
            g.Output(v, Layer(PresentValue, i), F32, "batch_size", h, "total_sequence_length", hs);
            string scores = g.Add(g.Scale(g.MatMul(q, g.Transpose(k, 0, 1, 3, 2)), (float)(1.0 / Math.Sqrt(hs))), bias);
            string probs = g.Op("Softmax", [scores], null, Attr("axis", -1L));
            string o = g.Reshape(g.Transpose(g.MatMul(probs, v), 0, 2, 1, 3), 0, 0, d); // [B, S, D]
            x = g.Add(x, Linear3(g, o, p + ".attn.o", d, d));
            string m = g.LayerNorm(x, p + ".ln2", d, 1e-5);
            m = Linear3(g, g.Gelu(Linear3(g, m, p + ".mlp.fc1", d, config.FeedForward)), p + ".mlp.fc2", config.FeedForward, d);
            x = g.Add(x, m);
        }
        g.Scope = "";
        string final = g.LayerNorm(x, "ln_f", d, 1e-5);
        string logits = g.MatMul(final, g.Transpose(tokEmb, 1, 0)); // tied: [B, S, V]
        g.Output(logits, Logits, F32, "batch_size", "sequence_length", config.VocabSize);
        return g;
    }

    /// <summary>torch.nn.Linear on [B, S, in]: x W^T + b.</summary>
    private static string Linear3(OnnxGraph g, string x, string prefix, long inFeatures, long outFeatures) =>
        g.Add(g.MatMul(x, g.Transpose(g.Weight(prefix + ".weight", outFeatures, inFeatures), 1, 0)), g.Weight(prefix + ".bias", outFeatures));
}

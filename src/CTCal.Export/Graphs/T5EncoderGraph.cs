using CTCal.Core.Diffusers;
using CTCal.Export.Onnx;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Graphs;

/// <summary>
/// ONNX graph of a transformers <c>T5EncoderModel</c> (T5 v1.1, SD3's <c>text_encoder_3</c>) with Optimum's names: input
/// <c>input_ids</c> int32 [batch, sequence] (int32 like this exporter's CLIP encoders), output <c>last_hidden_state</c>
/// float32 [batch, sequence, d_model]. No attention mask, as SD3's pipeline calls it. Any sequence length: the relative
/// position buckets come from a constant table over key - query clamped to +-relative_attention_max_distance (every
/// larger distance falls in the last bucket of its direction), computed at export with transformers' fp32 formula.
/// </summary>
public static class T5EncoderGraph
{
    public const string Input = "input_ids";
    public const string LastHiddenState = "last_hidden_state";

    public static OnnxGraph Build(T5Config c, bool fp16Weights)
    {
        var g = new OnnxGraph("text_encoder_3", fp16Weights);
        string ids = g.Input(Input, DataType.Int32, "batch", "sequence");
        long d = c.DModel, inner = (long)c.NumHeads * c.DKv;
        string batch = g.ShapeOf(ids, 0, 1); // [1]: B
        string seq = g.ShapeOf(ids, 1, 2);   // [1]: S

        g.Scope = "shared";
        string h = g.Op("Gather", [g.Weight("shared.weight", c.VocabSize, d), ids], null, OnnxGraph.Attr("axis", 0L)); // [B, S, d]
        h = g.Reshape(h, -1, d); // [B*S, d]

        g.Scope = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias";
        string bias = PositionBias(g, seq, c); // [1, heads, S, S]

        for (int i = 0; i < c.NumLayers; i++)
        {
            // T5Block: T5LayerSelfAttention then T5LayerFF, each pre-RMS-norm with a residual
            string p = $"encoder.block.{i}";
            g.Scope = p;
            string x = RmsNorm(g, h, p + ".layer.0.layer_norm", d, c.LayerNormEpsilon);
            string a = p + ".layer.0.SelfAttention";
            string q = g.Linear(x, a + ".q", d, inner, bias: false);
            string k = g.Linear(x, a + ".k", d, inner, bias: false);
            string v = g.Linear(x, a + ".v", d, inner, bias: false);
            h = g.Add(h, g.Linear(Attention(g, q, k, v, bias, batch, c.NumHeads, c.DKv), a + ".o", inner, d, bias: false));

            // T5DenseGatedActDense (gated-gelu): wo(gelu_new(wi_0(x)) * wi_1(x))
            string f = p + ".layer.1.DenseReluDense";
            x = RmsNorm(g, h, p + ".layer.1.layer_norm", d, c.LayerNormEpsilon);
            string gate = SD3Blocks.GeluTanh(g, g.Linear(x, f + ".wi_0", d, c.DFf, bias: false));
            h = g.Add(h, g.Linear(g.Mul(gate, g.Linear(x, f + ".wi_1", d, c.DFf, bias: false)), f + ".wo", c.DFf, d, bias: false));
        }

        g.Scope = "encoder.final_layer_norm";
        h = RmsNorm(g, h, "encoder.final_layer_norm", d, c.LayerNormEpsilon);
        h = g.Reshape(h, g.Concat(0, batch, seq, g.ConstInt64(d))); // [B, S, d]
        g.Scope = "";
        g.Output(h, LastHiddenState, DataType.Float, "batch", "sequence", d);
        return g;
    }

    // transformers T5LayerNorm: weight * x / sqrt(mean(x^2) + eps), no mean subtraction, no bias.
    private static string RmsNorm(OnnxGraph g, string x, string prefix, long dim, double eps)
    {
        string variance = g.Op("ReduceMean", [g.Mul(x, x)], null, OnnxGraph.Attr("axes", new long[] { -1 }), OnnxGraph.Attr("keepdims", 1L)); // [N, 1]
        string normed = g.Div(x, g.Op("Sqrt", [g.Add(variance, g.ScalarFloat((float)eps))]));
        return g.Mul(normed, g.Weight(prefix + ".weight", dim));
    }

    // transformers T5Attention (encoder): scores = q k^T + position_bias (no 1/sqrt(d) scaling), softmax, @ v.
    private static string Attention(OnnxGraph g, string q, string k, string v, string positionBias, string batch, long heads, long headDim)
    {
        string split = g.Concat(0, batch, g.ConstInt64(-1, heads, headDim));
        string qh = g.Transpose(g.Reshape(q, split), 0, 2, 1, 3); // [B, h, S, d]
        string kh = g.Transpose(g.Reshape(k, split), 0, 2, 3, 1); // [B, h, d, S]
        string vh = g.Transpose(g.Reshape(v, split), 0, 2, 1, 3); // [B, h, S, d]
        string scores = g.Add(g.MatMul(qh, kh), positionBias);    // [B, h, S, S]
        string probs = g.Op("Softmax", [scores], null, OnnxGraph.Attr("axis", -1L));
        string o = g.Transpose(g.MatMul(probs, vh), 0, 2, 1, 3);  // [B, S, h, d]
        return g.Reshape(o, -1, heads * headDim);                 // [B*S, h*d]
    }

    // transformers T5Attention.compute_bias (bidirectional): bias[h, i, j] = relative_attention_bias[bucket(j - i), h].
    private static string PositionBias(OnnxGraph g, string seq, T5Config c)
    {
        int maxDistance = c.RelativeAttentionMaxDistance;
        long[] buckets = BucketTable(c.RelativeAttentionNumBuckets, maxDistance); // index r + maxDistance, r in [-max, max]
        string range = g.Op("Range", [g.ScalarInt64(0), g.Op("Squeeze", [seq, g.ConstInt64(0)]), g.ScalarInt64(1)]); // [S]
        string relative = g.Sub(g.Unsqueeze(range, 0), g.Unsqueeze(range, 1));    // [S, S]: key - query
        string clamped = g.Op("Clip", [relative, g.ScalarInt64(-maxDistance), g.ScalarInt64(maxDistance)]);
        string index = g.Add(clamped, g.ScalarInt64(maxDistance));                  // [S, S] in [0, 2*max]
        string bucket = g.Op("Gather", [g.ConstInt64(buckets), index], null, OnnxGraph.Attr("axis", 0L)); // [S, S]
        string table = g.Weight("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", c.RelativeAttentionNumBuckets, c.NumHeads);
        string values = g.Op("Gather", [table, bucket], null, OnnxGraph.Attr("axis", 0L)); // [S, S, heads]
        return g.Unsqueeze(g.Transpose(values, 2, 0, 1), 0);                        // [1, heads, S, S]
    }

    /// <summary>
    /// transformers' _relative_position_bucket (bidirectional) for r = -maxDistance..maxDistance: half the buckets for
    /// r &gt; 0; within a half, |r| &lt; n/2 (n = numBuckets/2) is its own bucket, larger |r| goes to
    /// n/2 + (long)(log(|r| / (n/2)) / log(maxDistance / (n/2)) * (n - n/2)) capped at n - 1, the logarithm in fp32.
    /// </summary>
    internal static long[] BucketTable(int numBuckets, int maxDistance)
    {
        int half = numBuckets / 2, maxExact = half / 2;
        float logRange = (float)Math.Log((double)maxDistance / maxExact);
        var table = new long[2 * maxDistance + 1];
        for (int r = -maxDistance; r <= maxDistance; r++)
        {
            long bucket = r > 0 ? half : 0;
            int n = Math.Abs(r);
            if (n < maxExact)
            {
                bucket += n;
            }
            else
            {
                float large = MathF.Log((float)n / maxExact) / logRange * (half - maxExact);
                bucket += Math.Min(maxExact + (long)large, half - 1);
            }
            table[r + maxDistance] = bucket;
        }
        return table;
    }
}

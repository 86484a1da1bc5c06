using CTCal.Core.Diffusers;
using CTCal.Export.Onnx;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Graphs;

/// <summary>
/// ONNX graph of a diffusers 0.29.2 <c>SD3Transformer2DModel</c> (the SD3 MMDiT), with Optimum's SD3 transformer names:
/// inputs <c>hidden_states</c> float32 [batch, in_channels, height, width] (height, width multiples of patch_size, at most
/// pos_embed_max_size patches), <c>encoder_hidden_states</c> float32 [batch, sequence, joint_attention_dim],
/// <c>pooled_projections</c> float32 [batch, pooled_projection_dim] and <c>timestep</c> float32 [batch] (sigma x 1000; a
/// [1] value is broadcast); output <c>out_hidden_states</c> float32 [batch, out_channels, height, width], the flow-matching
/// velocity. Height and width are symbolic: the centre crop of the stored position table (<c>pos_embed.pos_embed</c>, an
/// initializer like every weight) is computed in the graph from the input's size, as diffusers' PatchEmbed does; an input
/// of more than pos_embed_max_size patches on a side fails at run time (a Gather index error), as diffusers refuses it.
/// </summary>
public static class SD3TransformerGraph
{
    public const string HiddenStatesInput = "hidden_states";
    public const string EncoderHiddenStatesInput = "encoder_hidden_states";
    public const string PooledProjectionsInput = "pooled_projections";
    public const string TimestepInput = "timestep";
    /// <summary>Optimum's name (<c>SD3TransformerOnnxConfig</c> maps the model's <c>sample</c> output to it).</summary>
    public const string Output = "out_hidden_states";

    /// <summary>Width of the sinusoidal timestep features (diffusers' Timesteps(256, flip_sin_to_cos=True, shift 0)).</summary>
    private const int TimestepChannels = 256;

    /// <summary>
    /// The transformer graph; <paramref name="fused"/> (an export profile's, <see cref="FusedOps.For"/>) writes its attention
    /// as MultiHeadAttention and its tanh GELU as FastGelu where the profile has them.
    /// </summary>
    public static OnnxGraph Build(SD3TransformerConfig c, bool fp16Weights, FusedOps? fused = null)
    {
        var g = new OnnxGraph("transformer", fp16Weights, fused);
        string x = g.Input(HiddenStatesInput, DataType.Float, "batch", (long)c.InChannels, "height", "width");
        string context = g.Input(EncoderHiddenStatesInput, DataType.Float, "batch", "sequence", (long)c.JointAttentionDim);
        string pooled = g.Input(PooledProjectionsInput, DataType.Float, "batch", (long)c.PooledProjectionDim);
        string timestep = g.Input(TimestepInput, DataType.Float, "batch");

        long dim = c.InnerDim;
        long p = c.PatchSize;
        string batch = g.ShapeOf(x, 0, 1); // [1]: B

        string h = PatchEmbed(g, x, batch, c);                                            // [B, N, D]
        string temb = TimeTextEmbed(g, timestep, pooled, batch, c);                        // [B, D]
        string siluTemb = g.Silu(temb);                                                    // every adaLN takes silu(temb)

        g.Scope = "context_embedder";
        string text = SD3Blocks.Linear3(g, context, batch, "context_embedder", c.JointAttentionDim, c.CaptionProjectionDim); // [B, L, D]

        for (int i = 0; i < c.NumLayers; i++)
        {
            bool last = i == c.NumLayers - 1;
            var (image, next) = SD3Blocks.JointTransformerBlock(g, h, text, siluTemb, batch, $"transformer_blocks.{i}", dim,
                c.NumAttentionHeads, c.AttentionHeadDim, contextPreOnly: last);
            h = image;
            if (next is not null) text = next;
        }

        g.Scope = "norm_out";
        h = SD3Blocks.AdaLayerNormContinuous(g, h, siluTemb, "norm_out", dim, dim);        // [B, N, D]
        g.Scope = "proj_out";
        h = SD3Blocks.Linear3(g, h, batch, "proj_out", dim, p * p * c.OutChannels);        // [B, N, p*p*C]

        // Unpatchify: token (i, j) holds a p x q patch of every output channel, laid out (p, q, C).
        g.Scope = "unpatchify";
        string hw = g.ShapeOf(x, 2, 4);                                                    // [2]: H, W
        string grid = g.Div(hw, g.ConstInt64(p));                                          // [2]: H/p, W/p
        h = g.Reshape(h, g.Concat(0, batch, grid, g.ConstInt64(p, p, c.OutChannels)));     // [B, H/p, W/p, p, q, C]
        h = g.Transpose(h, 0, 5, 1, 3, 2, 4);                                              // [B, C, H/p, p, W/p, q]
        h = g.Reshape(h, g.Concat(0, batch, g.ConstInt64(c.OutChannels), hw));            // [B, C, H, W]
        g.Scope = "";
        g.Output(h, Output, DataType.Float, "batch", (long)c.OutChannels, "height", "width");
        return g;
    }

    // diffusers.models.embeddings.PatchEmbed with pos_embed_max_size: strided conv, flatten to row-major tokens, add the
    // centre crop (top = (max - H/p) / 2, left = (max - W/p) / 2, integer division) of the stored [1, max*max, D] table.
    private static string PatchEmbed(OnnxGraph g, string x, string batch, SD3TransformerConfig c)
    {
        g.Scope = "pos_embed";
        long dim = c.InnerDim, max = c.PosEmbedMaxSize;
        string tokens = g.Conv(x, "pos_embed.proj", c.InChannels, dim, c.PatchSize, stride: c.PatchSize, padding: 0); // [B, D, H/p, W/p]
        tokens = g.Transpose(g.Reshape(tokens, g.Concat(0, batch, g.ConstInt64(dim, -1))), 0, 2, 1); // [B, D, N] -> [B, N, D]

        string grid = g.Div(g.ShapeOf(x, 2, 4), g.ConstInt64(c.PatchSize));              // [2]: h = H/p, w = W/p
        string start = g.Div(g.Sub(g.ConstInt64(max, max), grid), g.ConstInt64(2));       // [2]: top, left
        string table = g.Reshape(g.Weight("pos_embed.pos_embed", 1, max * max, dim), max, max, dim); // [max, max, D]
        // Rows top..top+h-1, then columns left..left+w-1, by Gather: a grid larger than the table (which diffusers refuses)
        // always indexes past the table's end and fails, where a Slice would clamp and quietly crop the wrong positions.
        string rows = Positions(g, start, grid, 0);                                        // [h]
        string cols = Positions(g, start, grid, 1);                                        // [w]
        string crop = g.Op("Gather", [g.Op("Gather", [table, rows], null, OnnxGraph.Attr("axis", 0L)), cols], null, OnnxGraph.Attr("axis", 1L)); // [h, w, D]
        crop = g.Reshape(crop, 1, -1, dim);                                                // [1, h*w, D]
        return g.Add(tokens, crop);                                                        // [B, N, D]
    }

    // start[axis] .. start[axis] + grid[axis] - 1 as an int64 vector: Range(0, count) + start, not Range(start, end), which
    // ONNX Runtime's GatherToSliceFusion would turn into a (clamping) Slice.
    private static string Positions(OnnxGraph g, string start, string grid, long axis)
    {
        string first = g.Op("Gather", [start, g.ScalarInt64(axis)], null, OnnxGraph.Attr("axis", 0L));   // scalar
        string count = g.Op("Gather", [grid, g.ScalarInt64(axis)], null, OnnxGraph.Attr("axis", 0L));    // scalar
        return g.Add(g.Op("Range", [g.ScalarInt64(0), count, g.ScalarInt64(1)]), first);
    }

    // diffusers.models.embeddings.CombinedTimestepTextProjEmbeddings: Timesteps(256, flip_sin_to_cos=True, shift 0) ->
    // TimestepEmbedding (linear_1, SiLU, linear_2), plus PixArtAlphaTextProjection(silu) of the pooled text.
    private static string TimeTextEmbed(OnnxGraph g, string timestep, string pooled, string batch, SD3TransformerConfig c)
    {
        g.Scope = "time_text_embed";
        long dim = c.InnerDim;
        int half = TimestepChannels / 2;
        // diffusers' get_timestep_embedding in float32: exponent = (-ln(10000) * arange(half)) / half; freqs = exp(exponent)
        var freqs = new float[half];
        float logMax = (float)-Math.Log(10000.0);
        for (int i = 0; i < half; i++) freqs[i] = MathF.Exp(logMax * i / half);
        string t = g.Op("Expand", [timestep, batch]);                                      // [B]
        string args = g.Mul(g.Unsqueeze(t, 1), g.ConstFloat(freqs, 1, half));              // [B, half]
        string features = g.Concat(1, g.Op("Cos", [args]), g.Op("Sin", [args]));           // [B, 256]: cos first (flip_sin_to_cos)
        string p = "time_text_embed.timestep_embedder";
        string tEmb = g.Linear(g.Silu(g.Linear(features, p + ".linear_1", TimestepChannels, dim)), p + ".linear_2", dim, dim); // [B, D]
        p = "time_text_embed.text_embedder";
        string textEmb = g.Linear(g.Silu(g.Linear(pooled, p + ".linear_1", c.PooledProjectionDim, dim)), p + ".linear_2", dim, dim); // [B, D]
        return g.Add(tEmb, textEmb);
    }
}

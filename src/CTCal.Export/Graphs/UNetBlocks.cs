using CTCal.Export.Onnx;

namespace CTCal.Export.Graphs;

/// <summary>The UNet2DConditionModel sub-modules, each writing its nodes into an <see cref="OnnxGraph"/> under its diffusers name.</summary>
internal static class UNetBlocks
{
    // diffusers.models.resnet.ResnetBlock2D (time_embedding_norm "default", no up/down sampling)
    public static string Resnet(OnnxGraph g, string x, string? temb, string p, long inC, long outC, long tembDim, long groups, double eps, double outputScale)
    {
        string saved = g.Scope;
        g.Scope = p;
        string h = g.GroupNorm(x, p + ".norm1", inC, groups, eps, silu: true);
        h = g.Conv(h, p + ".conv1", inC, outC, 3);
        if (temb is not null)
        {
            string t = g.Linear(g.Silu(temb), p + ".time_emb_proj", tembDim, outC); // [B, outC]
            h = g.AddGroupNorm(h, t, p + ".norm2", outC, groups, eps, silu: true); // norm2(h + t[:, :, None, None])
        }
        else
        {
            h = g.GroupNorm(h, p + ".norm2", outC, groups, eps, silu: true);
        }
        h = g.Conv(h, p + ".conv2", outC, outC, 3);
        string shortcut = inC != outC ? g.Conv(x, p + ".conv_shortcut", inC, outC, 1) : x;
        string y = g.Add(shortcut, h);
        if (outputScale != 1.0) y = g.Scale(y, (float)(1.0 / outputScale));
        g.Scope = saved;
        return y;
    }

    // diffusers.models.downsampling.Downsample2D (use_conv): 3x3 conv, stride 2; padding 0 pads right/bottom by one like diffusers
    public static string Downsample(OnnxGraph g, string x, string p, long channels, long padding)
    {
        long[] pads = padding == 0 ? [0, 0, 1, 1] : [padding, padding, padding, padding];
        return g.ConvPads(x, p + ".conv", channels, channels, 3, 2, pads);
    }

    // diffusers.models.upsampling.Upsample2D (use_conv): nearest 2x, then 3x3 conv
    public static string Upsample(OnnxGraph g, string x, string p, long channels) =>
        g.Conv(g.Upsample2xNearest(x), p + ".conv", channels, channels, 3);

    // diffusers.models.attention_processor.Attention with AttnProcessor (no bias on q/k/v, to_out.0 with bias); tokens are 2-D
    public static string Attention(OnnxGraph g, string x, string? context, string batch, string p, long queryDim, long contextDim, long heads)
    {
        long headDim = queryDim / heads;
        string kv = context ?? x;
        long kvDim = context is null ? queryDim : contextDim;
        string q = g.Linear(x, p + ".to_q", queryDim, queryDim, bias: false);
        string k = g.Linear(kv, p + ".to_k", kvDim, queryDim, bias: false);
        string v = g.Linear(kv, p + ".to_v", kvDim, queryDim, bias: false);
        string o = g.Attention(q, k, v, batch, heads, headDim);
        return g.Linear(o, p + ".to_out.0", queryDim, queryDim);
    }

    // diffusers.models.attention.BasicTransformerBlock (layer norms, self-attn, cross-attn, GEGLU feed-forward)
    public static string TransformerBlock(OnnxGraph g, string x, string context, string batch, string p, long dim, long contextDim, long heads)
    {
        string saved = g.Scope;
        g.Scope = p;
        string a1 = Attention(g, g.LayerNorm(x, p + ".norm1", dim, 1e-5), null, batch, p + ".attn1", dim, dim, heads);
        var (h, n2) = g.AddLayerNorm(x, a1, p + ".norm2", dim, 1e-5);
        string a2 = Attention(g, n2, context, batch, p + ".attn2", dim, contextDim, heads);
        (h, string n3) = g.AddLayerNorm(h, a2, p + ".norm3", dim, 1e-5);
        h = g.Add(h, FeedForward(g, n3, batch, p + ".ff", dim));
        g.Scope = saved;
        return h;
    }

    // diffusers.models.attention.FeedForward with GEGLU: proj [dim -> 2*4dim], hidden * gelu(gate), Linear [4dim -> dim]
    // With FusedOps.GegluHalves: the proj as two Gemms on row slices of its weight and bias (no Split of the activation).
    // With FusedOps.BiasSplitGelu: Gemm without bias -> [B, S, 2*inner] -> com.microsoft.BiasSplitGelu (ContribOperators.md:
    // inputs X [N, S, D], bias [D]; output [N, S, D/2] = (X + bias)[..., :D/2] * gelu((X + bias)[..., D/2:]), diffusers' order).
    internal static string FeedForward(OnnxGraph g, string x, string batch, string p, long dim)
    {
        long inner = dim * 4;
        if (g.Fused.SplitGeluFor(inner * 2))
        {
            string noBias = g.Linear(x, p + ".net.0.proj", dim, inner * 2, bias: false); // [N, 2*inner]
            string bias = g.Weight(p + ".net.0.proj.bias", inner * 2);
            string tokens3 = g.Reshape(noBias, g.Concat(0, batch, g.ConstInt64(-1, inner * 2))); // [B, S, 2*inner]
            string gated = g.ContribOp("BiasSplitGelu", [tokens3, bias]); // [B, S, inner]
            return g.Linear(g.Reshape(gated, -1, inner), p + ".net.2", inner, dim); // [N, inner] -> [N, dim]
        }
        if (g.Fused.GegluHalves)
        {
            string w = g.Weight(p + ".net.0.proj.weight", inner * 2, dim); // [2*inner, dim]: hidden rows, then gate rows
            string b = g.Weight(p + ".net.0.proj.bias", inner * 2);
            string Rows(string t, long start) => g.Op("Slice", [t, g.ConstInt64(start), g.ConstInt64(start + inner), g.ConstInt64(0)]);
            string HalfGemm(long start) => g.Op("Gemm", [x, Rows(w, start), Rows(b, start)], null, OnnxGraph.Attr("transB", 1L)); // [N, inner]
            return g.Linear(g.Mul(HalfGemm(0), g.Gelu(HalfGemm(inner))), p + ".net.2", inner, dim); // hidden * gelu(gate) -> [N, dim]
        }
        string proj = g.Linear(x, p + ".net.0.proj", dim, inner * 2); // [N, 2*inner]
        string[] parts = g.OpMulti("Split", [proj], 2, OnnxGraph.Attr("axis", -1L)); // hidden, gate: [N, inner] each
        string hidden = g.Mul(parts[0], g.Gelu(parts[1]));
        return g.Linear(hidden, p + ".net.2", inner, dim);
    }

    // diffusers.models.transformers.transformer_2d.Transformer2DModel (continuous input; conv or linear proj_in/proj_out)
    public static string Transformer2D(OnnxGraph g, string x, string context, string batch, string p, long channels, long heads,
        int layers, long contextDim, long groups, bool linearProjection)
    {
        string saved = g.Scope;
        g.Scope = p;
        string h = g.GroupNorm(x, p + ".norm", channels, groups, 1e-6);
        string tokens;
        if (linearProjection)
        {
            tokens = g.Linear(g.SpatialToTokens(h, channels), p + ".proj_in", channels, channels); // [B*H*W, C]
        }
        else
        {
            tokens = g.SpatialToTokens(g.Conv(h, p + ".proj_in", channels, channels, 1), channels); // [B*H*W, C]
        }
        for (int i = 0; i < layers; i++)
            tokens = TransformerBlock(g, tokens, context, batch, $"{p}.transformer_blocks.{i}", channels, contextDim, heads);
        string outSpatial = linearProjection
            ? g.TokensToSpatial(g.Linear(tokens, p + ".proj_out", channels, channels), x)
            : g.Conv(g.TokensToSpatial(tokens, x), p + ".proj_out", channels, channels, 1);
        g.Scope = saved;
        return g.Add(outSpatial, x);
    }
}

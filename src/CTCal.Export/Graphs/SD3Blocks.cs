using CTCal.Export.Onnx;

namespace CTCal.Export.Graphs;

/// <summary>
/// The SD3 MMDiT sub-modules (diffusers 0.29.2), each writing its nodes into an <see cref="OnnxGraph"/> under its diffusers
/// name. Token streams are 3-D [B, S, D] so the per-sample modulation vectors [B, D] broadcast as [B, 1, D]; every Linear
/// runs as Gemm on the 2-D view [B*S, D] (no weight is transposed).
/// </summary>
internal static class SD3Blocks
{
    private const double NormEps = 1e-6;

    /// <summary>torch.nn.Linear on [B, S, in] -> [B, S, out] (<paramref name="batch"/>: the 1-element int64 B).</summary>
    public static string Linear3(OnnxGraph g, string x, string batch, string prefix, long inFeatures, long outFeatures)
    {
        string flat = g.Reshape(x, -1, inFeatures);                                        // [B*S, in]
        string y = g.Linear(flat, prefix, inFeatures, outFeatures);                       // [B*S, out]
        return g.Reshape(y, g.Concat(0, batch, g.ConstInt64(-1, outFeatures)));           // [B, S, out]
    }

    /// <summary>torch.nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False) over the last axis.</summary>
    public static string PlainLayerNorm(OnnxGraph g, string x, long dim)
    {
        string ones = g.ConstFloat(Enumerable.Repeat(1f, (int)dim).ToArray(), dim);
        return g.Op("LayerNormalization", [x, ones], null, OnnxGraph.Attr("axis", -1L), OnnxGraph.Attr("epsilon", (float)NormEps));
    }

    /// <summary>x * (1 + scale[:, None]) + shift[:, None] for x [B, S, D], scale and shift [B, D].</summary>
    public static string Modulate(OnnxGraph g, string x, string scale, string shift) =>
        g.Add(g.Mul(x, g.Unsqueeze(g.Add(scale, g.ScalarFloat(1f)), 1)), g.Unsqueeze(shift, 1));

    // diffusers.models.attention.AdaLayerNormZero (layer_norm): linear(silu(emb)) -> shift_msa, scale_msa, gate_msa,
    // shift_mlp, scale_mlp, gate_mlp ([B, D] each); returns the modulated norm of x and the other four.
    public static (string Normed, string GateMsa, string ShiftMlp, string ScaleMlp, string GateMlp) AdaLayerNormZero(
        OnnxGraph g, string x, string siluEmb, string p, long dim)
    {
        string emb = g.Linear(siluEmb, p + ".linear", dim, 6 * dim);                      // [B, 6D]
        string[] c = g.OpMulti("Split", [emb], 6, OnnxGraph.Attr("axis", 1L));             // 6 x [B, D]
        string normed = Modulate(g, PlainLayerNorm(g, x, dim), c[1], c[0]);                // [B, S, D]
        return (normed, c[2], c[3], c[4], c[5]);
    }

    // diffusers.models.normalization.AdaLayerNormContinuous (layer_norm, no affine, eps 1e-6): linear(silu(cond)) -> scale, shift.
    public static string AdaLayerNormContinuous(OnnxGraph g, string x, string siluEmb, string p, long dim, long conditioningDim)
    {
        string emb = g.Linear(siluEmb, p + ".linear", conditioningDim, 2 * dim);          // [B, 2D]
        string[] c = g.OpMulti("Split", [emb], 2, OnnxGraph.Attr("axis", 1L));             // scale, shift: [B, D]
        return Modulate(g, PlainLayerNorm(g, x, dim), c[0], c[1]);                        // [B, S, D]
    }

    /// <summary>
    /// PyTorch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); with
    /// <see cref="FusedOps.FastGelu"/> the one <c>com.microsoft.FastGelu</c> node that computes it.
    /// </summary>
    public static string GeluTanh(OnnxGraph g, string x)
    {
        if (g.Fused.FastGelu) return g.ContribOp("FastGelu", [x]);
        string cube = g.Mul(g.Mul(x, x), x);
        string inner = g.Scale(g.Add(x, g.Scale(cube, 0.044715f)), (float)Math.Sqrt(2.0 / Math.PI));
        return g.Mul(g.Scale(x, 0.5f), g.Add(g.Op("Tanh", [inner]), g.ScalarFloat(1f)));
    }

    // diffusers.models.attention.FeedForward(activation_fn="gelu-approximate"): net.0.proj, tanh GELU, net.2.
    public static string FeedForward(OnnxGraph g, string x, string batch, string p, long dim)
    {
        string h = GeluTanh(g, Linear3(g, x, batch, p + ".net.0.proj", dim, 4 * dim));     // [B, S, 4D]
        return Linear3(g, h, batch, p + ".net.2", 4 * dim, dim);                          // [B, S, D]
    }

    // diffusers Attention(added_kv_proj_dim, context_pre_only) with JointAttnProcessor2_0: image queries/keys/values
    // from to_q/k/v, text ones from add_q/k/v_proj, one softmax over [image tokens, text tokens]; to_out.0 on the image
    // part, to_add_out on the text part (absent when context_pre_only, whose text queries are not needed).
    public static (string Image, string? Text) JointAttention(OnnxGraph g, string image, string text, string batch, string p,
        long dim, long heads, long headDim, bool contextPreOnly)
    {
        long inner = heads * headDim;
        string q = Linear3(g, image, batch, p + ".to_q", dim, inner);                      // [B, N, inner]
        string k = g.Concat(1, Linear3(g, image, batch, p + ".to_k", dim, inner),
            Linear3(g, text, batch, p + ".add_k_proj", dim, inner));                        // [B, N+L, inner]: image keys, then text
        string v = g.Concat(1, Linear3(g, image, batch, p + ".to_v", dim, inner),
            Linear3(g, text, batch, p + ".add_v_proj", dim, inner));                        // [B, N+L, inner]
        if (!contextPreOnly) q = g.Concat(1, q, Linear3(g, text, batch, p + ".add_q_proj", dim, inner)); // [B, N+L, inner]
        else
        {
            // diffusers creates add_q_proj in the context_pre_only block too; its text queries would only feed the discarded text output
            g.Unused(p + ".add_q_proj.weight");
            g.Unused(p + ".add_q_proj.bias");
        }
        string o = g.Attention(g.Reshape(q, -1, inner), g.Reshape(k, -1, inner), g.Reshape(v, -1, inner), batch, heads, headDim); // [B*Sq, inner]
        o = g.Reshape(o, g.Concat(0, batch, g.ConstInt64(-1, inner)));                     // [B, Sq, inner]
        string n = g.ShapeOf(image, 1, 2);                                                 // [1]: N
        string imageOut = contextPreOnly ? o : g.Op("Slice", [o, g.ConstInt64(0), n, g.ConstInt64(1)]); // [B, N, inner]
        imageOut = Linear3(g, imageOut, batch, p + ".to_out.0", inner, dim);               // [B, N, D]
        if (contextPreOnly) return (imageOut, null);
        string textOut = g.Op("Slice", [o, n, g.ConstInt64(long.MaxValue), g.ConstInt64(1)]); // [B, L, inner]
        return (imageOut, Linear3(g, textOut, batch, p + ".to_add_out", inner, dim));      // [B, L, D]
    }

    // diffusers.models.attention.JointTransformerBlock: adaLN-Zero image and text streams, joint attention, gated
    // feed-forwards; the last block (context_pre_only) modulates the text with AdaLayerNormContinuous and returns no text.
    public static (string Image, string? Text) JointTransformerBlock(OnnxGraph g, string image, string text, string siluTemb,
        string batch, string p, long dim, long heads, long headDim, bool contextPreOnly)
    {
        string saved = g.Scope;
        g.Scope = p;
        var (normImage, gateMsa, shiftMlp, scaleMlp, gateMlp) = AdaLayerNormZero(g, image, siluTemb, p + ".norm1", dim);
        string normText;
        (string Gate, string Shift, string Scale, string GateMlp)? textMod = null;
        if (contextPreOnly)
        {
            normText = AdaLayerNormContinuous(g, text, siluTemb, p + ".norm1_context", dim, dim);
        }
        else
        {
            var z = AdaLayerNormZero(g, text, siluTemb, p + ".norm1_context", dim);
            normText = z.Normed;
            textMod = (z.GateMsa, z.ShiftMlp, z.ScaleMlp, z.GateMlp);
        }
        var (attnImage, attnText) = JointAttention(g, normImage, normText, batch, p + ".attn", dim, heads, headDim, contextPreOnly);

        string h = g.Add(image, g.Mul(g.Unsqueeze(gateMsa, 1), attnImage));                // [B, N, D]
        string hNorm = Modulate(g, PlainLayerNorm(g, h, dim), scaleMlp, shiftMlp);
        h = g.Add(h, g.Mul(g.Unsqueeze(gateMlp, 1), FeedForward(g, hNorm, batch, p + ".ff", dim)));

        string? c = null;
        if (textMod is { } m)
        {
            c = g.Add(text, g.Mul(g.Unsqueeze(m.Gate, 1), attnText!));                     // [B, L, D]
            string cNorm = Modulate(g, PlainLayerNorm(g, c, dim), m.Scale, m.Shift);
            c = g.Add(c, g.Mul(g.Unsqueeze(m.GateMlp, 1), FeedForward(g, cNorm, batch, p + ".ff_context", dim)));
        }
        g.Scope = saved;
        return (h, c);
    }
}

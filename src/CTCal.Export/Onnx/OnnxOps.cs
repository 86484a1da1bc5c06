using static CTCal.Export.Onnx.OnnxGraph;

namespace CTCal.Export.Onnx;

/// <summary>
/// Tensor helpers over <see cref="OnnxGraph"/> and the torch.nn layers the diffusers graphs are made of. Weights keep their
/// PyTorch layout: Linear weights stay [out, in] and are applied with <c>Gemm(transB = 1)</c> on 2-D token matrices
/// [tokens, in], so no weight is ever transposed (or copied) at export time.
/// </summary>
public static class OnnxOps
{
    public static string Add(this OnnxGraph g, string a, string b) => g.Op("Add", [a, b]);
    public static string Sub(this OnnxGraph g, string a, string b) => g.Op("Sub", [a, b]);
    public static string Mul(this OnnxGraph g, string a, string b) => g.Op("Mul", [a, b]);
    public static string Div(this OnnxGraph g, string a, string b) => g.Op("Div", [a, b]);
    public static string MatMul(this OnnxGraph g, string a, string b) => g.Op("MatMul", [a, b]);
    public static string Sigmoid(this OnnxGraph g, string x) => g.Op("Sigmoid", [x]);

    public static string Scale(this OnnxGraph g, string x, float factor) => g.Mul(x, g.ScalarFloat(factor));

    /// <summary>torch.nn.SiLU: x * sigmoid(x).</summary>
    public static string Silu(this OnnxGraph g, string x) => g.Mul(x, g.Sigmoid(x));

    /// <summary>
    /// Exact (erf) GELU, torch.nn.functional.gelu's default. With <see cref="FusedOps.Gelu"/>: <c>com.microsoft.Gelu</c>
    /// (ContribOperators.md: input X, output Y, no attributes; the erf form, not FastGelu's tanh approximation).
    /// </summary>
    public static string Gelu(this OnnxGraph g, string x)
    {
        if (g.Fused.Gelu) return g.ContribOp("Gelu", [x]);
        string erf = g.Op("Erf", [g.Scale(x, (float)(1.0 / Math.Sqrt(2.0)))]);
        return g.Mul(g.Scale(x, 0.5f), g.Add(erf, g.ScalarFloat(1f)));
    }

    /// <summary>CLIP's quick_gelu: x * sigmoid(1.702 x).</summary>
    public static string QuickGelu(this OnnxGraph g, string x) => g.Mul(x, g.Sigmoid(g.Scale(x, 1.702f)));

    public static string Reshape(this OnnxGraph g, string x, string shape) => g.Op("Reshape", [x, shape]);
    public static string Reshape(this OnnxGraph g, string x, params long[] shape) => g.Reshape(x, g.ConstInt64(shape));
    public static string Transpose(this OnnxGraph g, string x, params long[] perm) => g.Op("Transpose", [x], null, Attr("perm", perm));
    public static string Unsqueeze(this OnnxGraph g, string x, params long[] axes) => g.Op("Unsqueeze", [x, g.ConstInt64(axes)]);
    public static string Concat(this OnnxGraph g, long axis, params string[] xs) => g.Op("Concat", xs, null, Attr("axis", axis));

    /// <summary>Shape(x)[start:end] (opset 15+ Shape with start/end), an int64 vector.</summary>
    public static string ShapeOf(this OnnxGraph g, string x, long start, long end) =>
        g.Op("Shape", [x], null, Attr("start", start), Attr("end", end));

    public static string ShapeOf(this OnnxGraph g, string x) => g.Op("Shape", [x]);

    /// <summary>torch.nn.Linear on a 2-D token matrix [N, in] -> [N, out]: Gemm(x, W[out,in], b, transB = 1).</summary>
    public static string Linear(this OnnxGraph g, string x, string prefix, long inFeatures, long outFeatures, bool bias = true)
    {
        string w = g.Weight(prefix + ".weight", outFeatures, inFeatures);
        string[] inputs = bias ? [x, w, g.Weight(prefix + ".bias", outFeatures)] : [x, w];
        return g.Op("Gemm", inputs, null, Attr("transB", 1L));
    }

    /// <summary>torch.nn.Conv2d (square kernel, symmetric padding, bias).</summary>
    public static string Conv(this OnnxGraph g, string x, string prefix, long inChannels, long outChannels, long kernel, long stride = 1, long padding = -1)
    {
        long pad = padding < 0 ? kernel / 2 : padding;
        return g.ConvPads(x, prefix, inChannels, outChannels, kernel, stride, [pad, pad, pad, pad]);
    }

    /// <summary>torch.nn.Conv2d with explicit ONNX pads [top, left, bottom, right].</summary>
    public static string ConvPads(this OnnxGraph g, string x, string prefix, long inChannels, long outChannels, long kernel, long stride, long[] pads)
    {
        string w = g.Weight(prefix + ".weight", outChannels, inChannels, kernel, kernel);
        string b = g.Weight(prefix + ".bias", outChannels);
        return g.Op("Conv", [x, w, b], null,
            Attr("kernel_shape", kernel, kernel), Attr("strides", stride, stride), Attr("pads", pads), Attr("dilations", 1L, 1L));
    }

    /// <summary>
    /// torch.nn.GroupNorm on [B, C, H, W]: Reshape [B, G, C/G*H*W] -> InstanceNormalization (unit scale, zero bias) ->
    /// Reshape back -> per-channel weight/bias (the [C] state-dict tensors, unsqueezed to [C, 1, 1]).
    /// </summary>
    /// <remarks>
    /// With <see cref="FusedOps.GroupNorm"/>: <c>com.microsoft.GroupNorm</c> (ContribOperators.md: inputs X, gamma [C], beta
    /// [C]; attributes activation (required, 1 = SiLU), channels_last, epsilon, groups (required)) on NHWC between two
    /// Transposes, since ORT's CUDA kernel runs only channels_last = 1; <paramref name="silu"/> is then fused as activation 1.
    /// Channel counts the profile's kernel refuses keep the plain form (<see cref="FusedOps.GroupNormFor"/>).
    /// </remarks>
    public static string GroupNorm(this OnnxGraph g, string x, string prefix, long channels, long groups, double eps, bool silu = false)
    {
        string gamma = g.Weight(prefix + ".weight", channels);
        string beta = g.Weight(prefix + ".bias", channels);
        if (g.Fused.GroupNormFor(channels, groups))
        {
            string nhwc = g.Transpose(x, 0, 2, 3, 1); // [B, H, W, C]
            string y = g.ContribOp("GroupNorm", [nhwc, gamma, beta],
                Attr("activation", silu ? 1L : 0L), Attr("channels_last", 1L), Attr("epsilon", (float)eps), Attr("groups", groups));
            return g.Transpose(y, 0, 3, 1, 2); // [B, C, H, W]
        }
        string shape = g.ShapeOf(x);
        string grouped = g.Reshape(x, 0, groups, -1); // [B, G, C/G*H*W]
        string ones = g.ConstFloat(Enumerable.Repeat(1f, (int)groups).ToArray(), groups);
        string zeros = g.ConstFloat(new float[groups], groups);
        string normed = g.Op("InstanceNormalization", [grouped, ones, zeros], null, Attr("epsilon", (float)eps));
        string back = g.Reshape(normed, shape); // [B, C, H, W]
        string affine = g.Add(g.Mul(back, g.Unsqueeze(gamma, 1, 2)), g.Unsqueeze(beta, 1, 2));
        return silu ? g.Silu(affine) : affine;
    }

    /// <summary>
    /// <see cref="GroupNorm"/> of <c>x + skip[:, :, None, None]</c>, <paramref name="skip"/> being [B, C] (a resnet's time
    /// embedding projection added to its conv1 output). With <see cref="FusedOps.SkipGroupNorm"/>: <c>com.microsoft.SkipGroupNorm</c>
    /// (ContribOperators.md: inputs X, gamma, beta, skip, bias; outputs Y and the optional sum S, left out here because only
    /// the norm reads the sum) on NHWC between two Transposes like <see cref="GroupNorm"/>'s, the [B, C] skip broadcast over H
    /// and W by the kernel.
    /// </summary>
    public static string AddGroupNorm(this OnnxGraph g, string x, string skip, string prefix, long channels, long groups, double eps, bool silu = false)
    {
        if (!g.Fused.SkipGroupNorm || !g.Fused.GroupNormFor(channels, groups))
            return g.GroupNorm(g.Add(x, g.Unsqueeze(skip, 2, 3)), prefix, channels, groups, eps, silu); // skip as [B, C, 1, 1]
        string gamma = g.Weight(prefix + ".weight", channels);
        string beta = g.Weight(prefix + ".bias", channels);
        string nhwc = g.Transpose(x, 0, 2, 3, 1); // [B, H, W, C]
        string y = g.ContribOp("SkipGroupNorm", [nhwc, gamma, beta, skip],
            Attr("activation", silu ? 1L : 0L), Attr("channels_last", 1L), Attr("epsilon", (float)eps), Attr("groups", groups));
        return g.Transpose(y, 0, 3, 1, 2); // [B, C, H, W]
    }

    /// <summary>torch.nn.LayerNorm over the last axis (opset 17 LayerNormalization).</summary>
    public static string LayerNorm(this OnnxGraph g, string x, string prefix, long dim, double eps)
    {
        string gamma = g.Weight(prefix + ".weight", dim);
        string beta = g.Weight(prefix + ".bias", dim);
        return g.Op("LayerNormalization", [x, gamma, beta], null, Attr("axis", -1L), Attr("epsilon", (float)eps));
    }

    /// <summary>
    /// <c>sum = residual + x</c> followed by <see cref="LayerNorm"/> of the sum; returns both (the sum feeds the next residual).
    /// With <see cref="FusedOps.SkipLayerNormalization"/>: <c>com.microsoft.SkipLayerNormalization</c> (ContribOperators.md:
    /// inputs input, skip, gamma, beta, bias; outputs output, mean, inv_std_var, input_skip_bias_sum; attribute epsilon), with
    /// outputs 1 and 2 left unnamed. The tokens stay 2-D [N, dim], which ORT's kernels accept (skip_layer_norm_helper.h).
    /// </summary>
    public static (string Sum, string Normed) AddLayerNorm(this OnnxGraph g, string residual, string x, string prefix, long dim, double eps)
    {
        if (!g.Fused.SkipLayerNormalization)
        {
            string sum = g.Add(residual, x);
            return (sum, g.LayerNorm(sum, prefix, dim, eps));
        }
        string gamma = g.Weight(prefix + ".weight", dim);
        string beta = g.Weight(prefix + ".bias", dim);
        string[] outs = g.ContribOpMulti("SkipLayerNormalization", [x, residual, gamma, beta], [true, false, false, true], Attr("epsilon", (float)eps));
        return (outs[3], outs[0]);
    }

    /// <summary>[B, C, H, W] -> token matrix [B*H*W, C].</summary>
    public static string SpatialToTokens(this OnnxGraph g, string x, long channels) =>
        g.Reshape(g.Transpose(x, 0, 2, 3, 1), -1, channels);

    /// <summary>Token matrix [B*H*W, C] -> [B, C, H, W], taking B, H, W from <paramref name="like"/> ([B, C, H, W]).</summary>
    public static string TokensToSpatial(this OnnxGraph g, string tokens, string like)
    {
        string bhwc = g.Op("Gather", [g.ShapeOf(like), g.ConstInt64(0, 2, 3, 1)], null, Attr("axis", 0L));
        return g.Transpose(g.Reshape(tokens, bhwc), 0, 3, 1, 2); // [B, H, W, C] -> [B, C, H, W]
    }

    /// <summary>
    /// Scaled dot-product attention on token matrices (diffusers AttnProcessor / CLIPAttention core): q [B*Sq, h*d],
    /// k, v [B*Sk, h*d] -> [B*Sq, h*d]; <paramref name="batch"/> is a 1-element int64 tensor holding B; an optional additive
    /// <paramref name="mask"/> broadcasts against the scores [B, h, Sq, Sk].
    /// </summary>
    /// <remarks>
    /// Without a mask and with <see cref="FusedOps.MultiHeadAttention"/>: <c>com.microsoft.MultiHeadAttention</c>
    /// (ContribOperators.md inputs: query [B, S, hidden], key [B, L, hidden], value [B, L, v_hidden], then the optional bias,
    /// key_padding_mask, attention_bias, past_key, past_value, past_sequence_length, cache_indirection, all omitted; attribute
    /// num_heads; its default scale is 1/sqrt(head_size), the one used here).
    /// </remarks>
    public static string Attention(this OnnxGraph g, string q, string k, string v, string batch, long heads, long headDim, string? mask = null)
    {
        if (mask is null && g.Fused.MultiHeadAttention)
        {
            string bsh = g.Concat(0, batch, g.ConstInt64(-1, heads * headDim));
            string fused = g.ContribOp("MultiHeadAttention",
                [g.Reshape(q, bsh), g.Reshape(k, bsh), g.Reshape(v, bsh)], // [B, Sq, h*d], [B, Sk, h*d], [B, Sk, h*d]
                Attr("num_heads", heads));
            return g.Reshape(fused, -1, heads * headDim); // [B*Sq, h*d]
        }
        string split = g.Concat(0, batch, g.ConstInt64(-1, heads, headDim));
        string qh = g.Transpose(g.Reshape(q, split), 0, 2, 1, 3); // [B, h, Sq, d]
        string kh = g.Transpose(g.Reshape(k, split), 0, 2, 3, 1); // [B, h, d, Sk]
        string vh = g.Transpose(g.Reshape(v, split), 0, 2, 1, 3); // [B, h, Sk, d]
        string scores = g.Scale(g.MatMul(qh, kh), (float)(1.0 / Math.Sqrt(headDim))); // [B, h, Sq, Sk]
        if (mask is not null) scores = g.Add(scores, mask);
        string probs = g.Op("Softmax", [scores], null, Attr("axis", -1L));
        string o = g.Transpose(g.MatMul(probs, vh), 0, 2, 1, 3); // [B, Sq, h, d]
        return g.Reshape(o, -1, heads * headDim); // [B*Sq, h*d]
    }

    /// <summary>Nearest-neighbour 2x upsampling of [B, C, H, W] (F.interpolate(scale_factor=2, mode="nearest")).</summary>
    public static string Upsample2xNearest(this OnnxGraph g, string x) =>
        g.Op("Resize", [x, "", g.ConstFloat([1f, 1f, 2f, 2f], 4)], null,
            Attr("mode", "nearest"), Attr("coordinate_transformation_mode", "asymmetric"), Attr("nearest_mode", "floor"));
}

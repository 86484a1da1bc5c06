using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Export.Onnx;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Graphs;

/// <summary>
/// ONNX graph of a diffusers UNet2DConditionModel (SD 1.x/2.x): inputs <c>sample</c> float32 [batch, in_channels, height,
/// width], <c>timestep</c> float32 [batch] (float so fractional Karras/Euler timesteps pass unchanged; a [1] timestep is
/// broadcast over the batch) and <c>encoder_hidden_states</c> float32 [batch, sequence, cross_attention_dim]; output
/// <c>out_sample</c> float32 [batch, out_channels, height, width]. height and width must be multiples of
/// 2^(levels-1) (the graph upsamples by exactly 2x). Attention is computed in fp32, so <c>upcast_attention</c> needs no
/// extra nodes.
/// </summary>
public static class UNetGraph
{
    public const string SampleInput = "sample";
    public const string TimestepInput = "timestep";
    public const string EncoderHiddenStatesInput = "encoder_hidden_states";
    public const string Output = "out_sample";

    /// <summary>The full UNet's extra output and the shallow graph's extra input in a step-cache export.</summary>
    public const string DeepFeature = ManifestStepCache.FeatureName;

    /// <param name="fused">The contrib-operator fusions to write (<see cref="FusedOps.None"/> when null: the portable graph).</param>
    /// <param name="stepCacheBranch">
    /// When given, the graph has a second output <see cref="DeepFeature"/>: the hidden state entering the last
    /// <paramref name="stepCacheBranch"/> up-block layers, which <see cref="BuildShallow"/> takes back (DeepCache's cached feature).
    /// </param>
    public static OnnxGraph Build(UNetConfig c, bool fp16Weights, FusedOps? fused = null, int? stepCacheBranch = null)
    {
        if (stepCacheBranch is { } b) CheckBranch(c, b);
        return BuildCore(new OnnxGraph("unet", fp16Weights, fused), c, stepCacheBranch, shallow: false, flops: null);
    }

    /// <summary>
    /// DeepCache's shallow network for branch <paramref name="branch"/>: inputs <c>sample</c>, <c>timestep</c>,
    /// <c>encoder_hidden_states</c> and <see cref="DeepFeature"/> (the full graph's output of a previous step) ->
    /// <c>out_sample</c>. It recomputes <c>conv_in</c>, the down-block layers (and downsamplers) whose outputs are the skip
    /// connections of the last <paramref name="branch"/> up layers, those up layers (and any upsampler between them),
    /// <c>conv_norm_out</c> and <c>conv_out</c>. With the feature of the same step it reproduces <see cref="Build"/>'s output.
    /// The weights it does not read are recorded as <see cref="OnnxGraph.UnusedWeights"/> (a LoRA may still target them).
    /// </summary>
    public static OnnxGraph BuildShallow(UNetConfig c, int branch, bool fp16Weights, FusedOps? fused = null)
    {
        CheckBranch(c, branch);
        var g = BuildCore(new OnnxGraph("unet_shallow", fp16Weights, fused), c, branch, shallow: true, flops: null);
        var used = g.Weights.Select(w => w.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var w in Build(c, false).Weights)
            if (!used.Contains(w.Name)) g.Unused(w.Name);
        return g;
    }

    /// <summary>Up-block layers (resnet + attention pairs) of the UNet: the largest step-cache branch.</summary>
    public static int UpLayerCount(UNetConfig c) => c.BlockOutChannels.Length * (c.LayersPerBlock + 1);

    /// <summary>Channels and downscale (latent cells per feature cell) of the cached feature of <paramref name="branch"/>.</summary>
    public static (int Channels, int Downscale) FeatureShape(UNetConfig c, int branch)
    {
        CheckBranch(c, branch);
        int n = c.BlockOutChannels.Length, layers = c.LayersPerBlock + 1;
        int first = UpLayerCount(c) - branch; // the first recomputed up layer
        int block = first / layers, j = first % layers;
        // entering layer j of up block i: the mid block's output (first layer of all), the upsampled output of up block
        // i - 1 (j == 0) or the output of layer j - 1 of the same block
        int channels = first == 0 ? c.BlockOutChannels[^1] : j == 0 ? c.BlockOutChannels[n - block] : c.BlockOutChannels[n - 1 - block];
        return (channels, 1 << (n - 1 - block));
    }

    /// <summary>
    /// FLOPs of one call of the full graph (<paramref name="shallow"/> false) or of the shallow graph of
    /// <paramref name="branch"/>, for a batch of one at a latent of <paramref name="latentHeight"/> x
    /// <paramref name="latentWidth"/> and <paramref name="tokens"/> text tokens: 2 x the multiply-adds of every Conv, Gemm
    /// and attention MatMul the builder writes (normalisations, activations and additions are not counted). Counted by
    /// the same walk that builds the graphs, so the two cannot disagree on what a shallow step computes.
    /// </summary>
    public static double Flops(UNetConfig c, int latentHeight, int latentWidth, int tokens, int? branch = null, bool shallow = false)
    {
        if (shallow && branch is null) throw new ArgumentException("a shallow graph needs a branch", nameof(branch));
        if (branch is { } b) CheckBranch(c, b);
        var flops = new UNetFlops(latentHeight, latentWidth, tokens);
        BuildCore(new OnnxGraph("unet", false), c, branch, shallow, flops);
        return flops.Total;
    }

    private static void CheckBranch(UNetConfig c, int branch)
    {
        int max = UpLayerCount(c);
        if (branch < 1 || branch > max)
            throw new ArgumentOutOfRangeException(nameof(branch), branch,
                $"step-cache branch must be 1 to {max} (the UNet's up-block layers: {c.BlockOutChannels.Length} blocks x {c.LayersPerBlock + 1}), got {branch}");
    }

    private static OnnxGraph BuildCore(OnnxGraph g, UNetConfig c, int? branch, bool shallow, UNetFlops? flops)
    {
        string sample = g.Input(SampleInput, DataType.Float, "batch", (long)c.InChannels, "height", "width");
        string timestep = g.Input(TimestepInput, DataType.Float, "batch");
        string context = g.Input(EncoderHiddenStatesInput, DataType.Float, "batch", "sequence", (long)c.CrossAttentionDim);
        var (featureC, _) = branch is { } fb ? FeatureShape(c, fb) : (0, 0);
        string? feature = shallow ? g.Input(DeepFeature, DataType.Float, "batch", (long)featureC, "feature_height", "feature_width") : null;

        int n = c.BlockOutChannels.Length;
        long groups = c.NormNumGroups;
        double eps = c.NormEps;
        long tembDim = c.TimeEmbeddingDim;
        string batch = g.ShapeOf(sample, 0, 1); // [1] int64: B
        string contextTokens = g.Reshape(context, -1, c.CrossAttentionDim); // [B*S, D]

        string temb = TimeEmbedding(g, timestep, batch, c);
        flops?.Linear(c.BlockOutChannels[0], tembDim);
        flops?.Linear(tembDim, tembDim);

        if (c.CenterInputSample) sample = g.Sub(g.Scale(sample, 2f), g.ScalarFloat(1f));
        g.Scope = "conv_in";
        string h = g.Conv(sample, "conv_in", c.InChannels, c.BlockOutChannels[0], c.ConvInKernel);
        flops?.Conv(c.InChannels, c.BlockOutChannels[0], c.ConvInKernel);

        // diffusers CrossAttnDownBlock2D / DownBlock2D. The shallow graph stops once it has the skips its up layers use.
        var skips = new List<(string Value, long Channels)> { (h, c.BlockOutChannels[0]) };
        bool Enough() => shallow && skips.Count >= branch!.Value;
        long outC = c.BlockOutChannels[0];
        for (int i = 0; i < n && !Enough(); i++)
        {
            long inC = outC;
            outC = c.BlockOutChannels[i];
            bool cross = c.DownBlockTypes[i] == "CrossAttnDownBlock2D";
            for (int j = 0; j < c.LayersPerBlock && !Enough(); j++)
            {
                string p = $"down_blocks.{i}";
                h = UNetBlocks.Resnet(g, h, temb, $"{p}.resnets.{j}", j == 0 ? inC : outC, outC, tembDim, groups, eps, c.ResnetOutScaleFactor);
                flops?.Resnet(j == 0 ? inC : outC, outC, tembDim);
                if (cross)
                {
                    h = UNetBlocks.Transformer2D(g, h, contextTokens, batch, $"{p}.attentions.{j}", outC, c.NumAttentionHeads[i],
                        c.TransformerLayersPerBlock[i], c.CrossAttentionDim, groups, c.UseLinearProjection);
                    flops?.Transformer2D(outC, c.TransformerLayersPerBlock[i], c.CrossAttentionDim);
                }
                skips.Add((h, outC));
            }
            if (i < n - 1 && !Enough())
            {
                g.Scope = $"down_blocks.{i}.downsamplers.0";
                h = UNetBlocks.Downsample(g, h, $"down_blocks.{i}.downsamplers.0", outC, c.DownsamplePadding);
                flops?.Downsample(outC);
                skips.Add((h, outC));
            }
        }

        long midC = c.BlockOutChannels[^1];
        if (!shallow)
        {
            // diffusers UNetMidBlock2DCrossAttn
            h = UNetBlocks.Resnet(g, h, temb, "mid_block.resnets.0", midC, midC, tembDim, groups, eps, c.MidBlockScaleFactor);
            h = UNetBlocks.Transformer2D(g, h, contextTokens, batch, "mid_block.attentions.0", midC, c.MidBlockHeads,
                c.TransformerLayersPerBlock[^1], c.CrossAttentionDim, groups, c.UseLinearProjection);
            h = UNetBlocks.Resnet(g, h, temb, "mid_block.resnets.1", midC, midC, tembDim, groups, eps, c.MidBlockScaleFactor);
            flops?.Resnet(midC, midC, tembDim);
            flops?.Transformer2D(midC, c.TransformerLayersPerBlock[^1], c.CrossAttentionDim);
            flops?.Resnet(midC, midC, tembDim);
        }

        // diffusers CrossAttnUpBlock2D / UpBlock2D: each resnet consumes the latest skip (concatenated on channels). Up layer
        // u (block u / layers, layer u % layers) is the first recomputed one of a step-cache branch when u == U - branch:
        // the full graph outputs the hidden state entering it, the shallow graph starts there from its feature input.
        int layers = c.LayersPerBlock + 1;
        int firstCached = branch is { } br ? UpLayerCount(c) - br : -1;
        string? deepFeature = null;
        long prevOut = midC;
        for (int i = 0; i < n; i++)
        {
            long upOut = c.BlockOutChannels[n - 1 - i];
            bool cross = c.UpBlockTypes[i] == "CrossAttnUpBlock2D";
            flops?.AtLevel(n - 1 - i);
            for (int j = 0; j < layers; j++)
            {
                int u = i * layers + j;
                if (u == firstCached)
                {
                    if (shallow)
                    {
                        h = feature!;
                    }
                    else
                    {
                        deepFeature = h;
                    }
                }
                if (shallow && u < firstCached) continue;
                var (skip, skipC) = skips[^1];
                skips.RemoveAt(skips.Count - 1);
                long resIn = (j == 0 ? prevOut : upOut) + skipC;
                g.Scope = $"up_blocks.{i}";
                h = g.Concat(1, h, skip); // [B, C + C_skip, H, W]
                string p = $"up_blocks.{i}";
                h = UNetBlocks.Resnet(g, h, temb, $"{p}.resnets.{j}", resIn, upOut, tembDim, groups, eps, c.ResnetOutScaleFactor);
                flops?.Resnet(resIn, upOut, tembDim);
                if (cross)
                {
                    h = UNetBlocks.Transformer2D(g, h, contextTokens, batch, $"{p}.attentions.{j}", upOut, c.UpBlockHeads(i),
                        c.UpBlockTransformerLayers(i), c.CrossAttentionDim, groups, c.UseLinearProjection);
                    flops?.Transformer2D(upOut, c.UpBlockTransformerLayers(i), c.CrossAttentionDim);
                }
            }
            // a shallow graph that does not recompute this block's last layer starts after (or beyond) its upsampler
            if (i < n - 1 && !(shallow && (i + 1) * layers - 1 < firstCached))
            {
                g.Scope = $"up_blocks.{i}.upsamplers.0";
                h = UNetBlocks.Upsample(g, h, $"up_blocks.{i}.upsamplers.0", upOut);
                flops?.Upsample(upOut);
            }
            prevOut = upOut;
        }

        g.Scope = "conv_out";
        h = g.GroupNorm(h, "conv_norm_out", c.BlockOutChannels[0], groups, eps, silu: true);
        h = g.Conv(h, "conv_out", c.BlockOutChannels[0], c.OutChannels, c.ConvOutKernel);
        flops?.Conv(c.BlockOutChannels[0], c.OutChannels, c.ConvOutKernel);
        g.Scope = "";
        g.Output(h, Output, DataType.Float, "batch", (long)c.OutChannels, "height", "width");
        // second, so that out_sample stays output 0 for hosts that take outputs by position (diffusers' OnnxRuntimeModel)
        if (deepFeature is not null) g.Output(deepFeature, DeepFeature, DataType.Float, "batch", (long)featureC, "feature_height", "feature_width");
        return g;
    }

    // diffusers.models.embeddings.get_timestep_embedding + TimestepEmbedding (linear_1, SiLU, linear_2)
    private static string TimeEmbedding(OnnxGraph g, string timestep, string batch, UNetConfig c)
    {
        g.Scope = "time_embedding";
        long channels = c.BlockOutChannels[0];
        int half = (int)(channels / 2);
        // exponent = -ln(10000) * arange(half) / (half - freq_shift), evaluated in float32 like torch
        var freqs = new float[half];
        float logMax = (float)-Math.Log(10000.0);
        for (int i = 0; i < half; i++) freqs[i] = MathF.Exp(logMax * i / (half - c.FreqShift));
        string t = g.Op("Expand", [timestep, batch]); // [B]
        string args = g.Mul(g.Unsqueeze(t, 1), g.ConstFloat(freqs, 1, half)); // [B, half]
        string sin = g.Op("Sin", [args]);
        string cos = g.Op("Cos", [args]);
        string emb = c.FlipSinToCos ? g.Concat(1, cos, sin) : g.Concat(1, sin, cos); // [B, channels]
        if (channels % 2 == 1) emb = g.Op("Pad", [emb, g.ConstInt64(0, 0, 0, 1)]);
        string h = g.Linear(emb, "time_embedding.linear_1", channels, c.TimeEmbeddingDim);
        h = g.Linear(g.Silu(h), "time_embedding.linear_2", c.TimeEmbeddingDim, c.TimeEmbeddingDim);
        g.Scope = "";
        return h; // [B, temb]
    }
}

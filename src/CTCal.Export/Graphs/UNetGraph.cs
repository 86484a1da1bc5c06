using CTCal.Core.Diffusers;
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

    /// <param name="fused">The contrib-operator fusions to write (<see cref="FusedOps.None"/> when null: the portable graph).</param>
    public static OnnxGraph Build(UNetConfig c, bool fp16Weights, FusedOps? fused = null)
    {
        var g = new OnnxGraph("unet", fp16Weights, fused);
        string sample = g.Input(SampleInput, DataType.Float, "batch", (long)c.InChannels, "height", "width");
        string timestep = g.Input(TimestepInput, DataType.Float, "batch");
        string context = g.Input(EncoderHiddenStatesInput, DataType.Float, "batch", "sequence", (long)c.CrossAttentionDim);

        int n = c.BlockOutChannels.Length;
        long groups = c.NormNumGroups;
        double eps = c.NormEps;
        long tembDim = c.TimeEmbeddingDim;
        string batch = g.ShapeOf(sample, 0, 1); // [1] int64: B
        string contextTokens = g.Reshape(context, -1, c.CrossAttentionDim); // [B*S, D]

        string temb = TimeEmbedding(g, timestep, batch, c);

        if (c.CenterInputSample) sample = g.Sub(g.Scale(sample, 2f), g.ScalarFloat(1f));
        g.Scope = "conv_in";
        string h = g.Conv(sample, "conv_in", c.InChannels, c.BlockOutChannels[0], c.ConvInKernel);

        // diffusers CrossAttnDownBlock2D / DownBlock2D
        var skips = new List<(string Value, long Channels)> { (h, c.BlockOutChannels[0]) };
        long outC = c.BlockOutChannels[0];
        for (int i = 0; i < n; i++)
        {
            long inC = outC;
            outC = c.BlockOutChannels[i];
            bool cross = c.DownBlockTypes[i] == "CrossAttnDownBlock2D";
            for (int j = 0; j < c.LayersPerBlock; j++)
            {
                string p = $"down_blocks.{i}";
                h = UNetBlocks.Resnet(g, h, temb, $"{p}.resnets.{j}", j == 0 ? inC : outC, outC, tembDim, groups, eps, c.ResnetOutScaleFactor);
                if (cross)
                    h = UNetBlocks.Transformer2D(g, h, contextTokens, batch, $"{p}.attentions.{j}", outC, c.NumAttentionHeads[i],
                        c.TransformerLayersPerBlock[i], c.CrossAttentionDim, groups, c.UseLinearProjection);
                skips.Add((h, outC));
            }
            if (i < n - 1)
            {
                g.Scope = $"down_blocks.{i}.downsamplers.0";
                h = UNetBlocks.Downsample(g, h, $"down_blocks.{i}.downsamplers.0", outC, c.DownsamplePadding);
                skips.Add((h, outC));
            }
        }

        // diffusers UNetMidBlock2DCrossAttn
        long midC = c.BlockOutChannels[^1];
        h = UNetBlocks.Resnet(g, h, temb, "mid_block.resnets.0", midC, midC, tembDim, groups, eps, c.MidBlockScaleFactor);
        h = UNetBlocks.Transformer2D(g, h, contextTokens, batch, "mid_block.attentions.0", midC, c.MidBlockHeads,
            c.TransformerLayersPerBlock[^1], c.CrossAttentionDim, groups, c.UseLinearProjection);
        h = UNetBlocks.Resnet(g, h, temb, "mid_block.resnets.1", midC, midC, tembDim, groups, eps, c.MidBlockScaleFactor);

        // diffusers CrossAttnUpBlock2D / UpBlock2D: each resnet consumes the latest skip (concatenated on channels)
        long prevOut = midC;
        for (int i = 0; i < n; i++)
        {
            long upOut = c.BlockOutChannels[n - 1 - i];
            bool cross = c.UpBlockTypes[i] == "CrossAttnUpBlock2D";
            int layers = c.LayersPerBlock + 1;
            for (int j = 0; j < layers; j++)
            {
                var (skip, skipC) = skips[^1];
                skips.RemoveAt(skips.Count - 1);
                long resIn = (j == 0 ? prevOut : upOut) + skipC;
                g.Scope = $"up_blocks.{i}";
                h = g.Concat(1, h, skip); // [B, C + C_skip, H, W]
                string p = $"up_blocks.{i}";
                h = UNetBlocks.Resnet(g, h, temb, $"{p}.resnets.{j}", resIn, upOut, tembDim, groups, eps, c.ResnetOutScaleFactor);
                if (cross)
                    h = UNetBlocks.Transformer2D(g, h, contextTokens, batch, $"{p}.attentions.{j}", upOut, c.UpBlockHeads(i),
                        c.UpBlockTransformerLayers(i), c.CrossAttentionDim, groups, c.UseLinearProjection);
            }
            if (i < n - 1)
            {
                g.Scope = $"up_blocks.{i}.upsamplers.0";
                h = UNetBlocks.Upsample(g, h, $"up_blocks.{i}.upsamplers.0", upOut);
            }
            prevOut = upOut;
        }

        g.Scope = "conv_out";
        h = g.GroupNorm(h, "conv_norm_out", c.BlockOutChannels[0], groups, eps, silu: true);
        h = g.Conv(h, "conv_out", c.BlockOutChannels[0], c.OutChannels, c.ConvOutKernel);
        g.Scope = "";
        g.Output(h, Output, DataType.Float, "batch", (long)c.OutChannels, "height", "width");
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

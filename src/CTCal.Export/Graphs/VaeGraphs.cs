using CTCal.Core.Diffusers;
using CTCal.Export.Onnx;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Graphs;

/// <summary>
/// ONNX graphs of a diffusers AutoencoderKL. <c>vae_encoder</c>: <c>sample</c> float32 [batch, in_channels, height, width]
/// -> <c>latent_parameters</c> float32 [batch, 2*latent_channels, height/f, width/f]: the output of quant_conv, i.e. the
/// diagonal Gaussian's mean (first latent_channels channels) and log-variance (last latent_channels, not yet clamped to
/// [-30, 20]) concatenated on the channel axis, exactly diffusers' <c>latent_dist.parameters</c>.
/// <c>vae_decoder</c>: <c>latent_sample</c> [batch, latent_channels, h, w] -> <c>sample</c> [batch, out_channels, h*f, w*f]
/// (post_quant_conv included). Neither applies scaling_factor (nor shift_factor). A config with <c>use_quant_conv</c> /
/// <c>use_post_quant_conv</c> false (SD3's 16-channel VAE) has no such conv, and the graphs then have none: the encoder's
/// output is encoder.conv_out's, the decoder starts at decoder.conv_in.
/// </summary>
public static class VaeGraphs
{
    public const string EncoderInput = "sample";
    public const string EncoderOutput = "latent_parameters";
    public const string DecoderInput = "latent_sample";
    public const string DecoderOutput = "sample";
    private const double Eps = 1e-6;

    /// <param name="fused">The contrib-operator fusions to write (<see cref="FusedOps.None"/> when null: the portable graph).</param>
    public static OnnxGraph BuildEncoder(VaeConfig c, bool fp16Weights, FusedOps? fused = null)
    {
        var g = new OnnxGraph("vae_encoder", fp16Weights, fused);
        string x = g.Input(EncoderInput, DataType.Float, "batch", (long)c.InChannels, "height", "width");
        string batch = g.ShapeOf(x, 0, 1);
        int n = c.BlockOutChannels.Length;
        long groups = c.NormNumGroups;
        g.Scope = "encoder.conv_in";
        string h = g.Conv(x, "encoder.conv_in", c.InChannels, c.BlockOutChannels[0], 3);
        long outC = c.BlockOutChannels[0];
        for (int i = 0; i < n; i++)
        {
            // diffusers DownEncoderBlock2D (Downsample2D with padding 0: pad right/bottom, conv stride 2)
            long inC = outC;
            outC = c.BlockOutChannels[i];
            for (int j = 0; j < c.LayersPerBlock; j++)
                h = UNetBlocks.Resnet(g, h, null, $"encoder.down_blocks.{i}.resnets.{j}", j == 0 ? inC : outC, outC, 0, groups, Eps, 1.0);
            if (i < n - 1)
            {
                g.Scope = $"encoder.down_blocks.{i}.downsamplers.0";
                h = UNetBlocks.Downsample(g, h, $"encoder.down_blocks.{i}.downsamplers.0", outC, 0);
            }
        }
        h = MidBlock(g, h, batch, "encoder.mid_block", outC, groups, c.MidBlockAddAttention);
        g.Scope = "encoder.conv_out";
        h = g.GroupNorm(h, "encoder.conv_norm_out", outC, groups, Eps, silu: true);
        h = g.Conv(h, "encoder.conv_out", outC, 2L * c.LatentChannels, 3);
        if (c.UseQuantConv)
        {
            g.Scope = "quant_conv";
            h = g.Conv(h, "quant_conv", 2L * c.LatentChannels, 2L * c.LatentChannels, 1);
        }
        g.Scope = "";
        g.Output(h, EncoderOutput, DataType.Float, "batch", 2L * c.LatentChannels, "latent_height", "latent_width");
        return g;
    }

    /// <param name="fused">The contrib-operator fusions to write (<see cref="FusedOps.None"/> when null: the portable graph).</param>
    public static OnnxGraph BuildDecoder(VaeConfig c, bool fp16Weights, FusedOps? fused = null)
    {
        var g = new OnnxGraph("vae_decoder", fp16Weights, fused);
        string z = g.Input(DecoderInput, DataType.Float, "batch", (long)c.LatentChannels, "latent_height", "latent_width");
        string batch = g.ShapeOf(z, 0, 1);
        int n = c.BlockOutChannels.Length;
        long groups = c.NormNumGroups;
        string h = z;
        if (c.UsePostQuantConv)
        {
            g.Scope = "post_quant_conv";
            h = g.Conv(z, "post_quant_conv", c.LatentChannels, c.LatentChannels, 1);
        }
        long topC = c.BlockOutChannels[^1];
        g.Scope = "decoder.conv_in";
        h = g.Conv(h, "decoder.conv_in", c.LatentChannels, topC, 3);
        h = MidBlock(g, h, batch, "decoder.mid_block", topC, groups, c.MidBlockAddAttention);
        long prevOut = topC;
        for (int i = 0; i < n; i++)
        {
            // diffusers UpDecoderBlock2D: layers_per_block + 1 resnets, then Upsample2D except for the last block
            long outC = c.BlockOutChannels[n - 1 - i];
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
                h = UNetBlocks.Resnet(g, h, null, $"decoder.up_blocks.{i}.resnets.{j}", j == 0 ? prevOut : outC, outC, 0, groups, Eps, 1.0);
            if (i < n - 1)
            {
                g.Scope = $"decoder.up_blocks.{i}.upsamplers.0";
                h = UNetBlocks.Upsample(g, h, $"decoder.up_blocks.{i}.upsamplers.0", outC);
            }
            prevOut = outC;
        }
        g.Scope = "decoder.conv_out";
        h = g.GroupNorm(h, "decoder.conv_norm_out", prevOut, groups, Eps, silu: true);
        h = g.Conv(h, "decoder.conv_out", prevOut, c.OutChannels, 3);
        g.Scope = "";
        g.Output(h, DecoderOutput, DataType.Float, "batch", (long)c.OutChannels, "height", "width");
        return g;
    }

    // diffusers UNetMidBlock2D (no time embedding): resnet, single-head self-attention, resnet
    private static string MidBlock(OnnxGraph g, string x, string batch, string p, long channels, long groups, bool addAttention)
    {
        string h = UNetBlocks.Resnet(g, x, null, p + ".resnets.0", channels, channels, 0, groups, Eps, 1.0);
        if (addAttention) h = SpatialSelfAttention(g, h, batch, p + ".attentions.0", channels, groups);
        return UNetBlocks.Resnet(g, h, null, p + ".resnets.1", channels, channels, 0, groups, Eps, 1.0);
    }

    // diffusers Attention(heads=1, group_norm, bias=True, residual_connection=True) on [B, C, H, W]
    private static string SpatialSelfAttention(OnnxGraph g, string x, string batch, string p, long channels, long groups)
    {
        string saved = g.Scope;
        g.Scope = p;
        string tokens = g.SpatialToTokens(g.GroupNorm(x, p + ".group_norm", channels, groups, Eps), channels); // [B*H*W, C]
        string q = g.Linear(tokens, p + ".to_q", channels, channels);
        string k = g.Linear(tokens, p + ".to_k", channels, channels);
        string v = g.Linear(tokens, p + ".to_v", channels, channels);
        string o = g.Linear(g.Attention(q, k, v, batch, 1, channels), p + ".to_out.0", channels, channels);
        string y = g.Add(g.TokensToSpatial(o, x), x);
        g.Scope = saved;
        return y;
    }
}

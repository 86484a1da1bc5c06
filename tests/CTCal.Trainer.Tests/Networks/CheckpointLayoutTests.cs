using Xunit;
using CTCal.Core.Diffusers;
using CTCal.Trainer.Networks;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>
/// The SD 1.x/2.x layouts at reduced width: the key sets must have the tensor counts of the real checkpoints
/// (UNet 686, VAE 248; widths change shapes, not keys), so a real diffusers folder loads without renaming.
/// </summary>
public sealed class CheckpointLayoutTests
{
    private static UNetConfig SdLayout(bool sd2) => UNetConfig.Parse($$"""
    {
      "block_out_channels": [32, 64, 128, 128],
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "layers_per_block": 2,
      "attention_head_dim": {{(sd2 ? "[1, 2, 4, 4]" : "8")}},
      "cross_attention_dim": 48,
      "use_linear_projection": {{(sd2 ? "true" : "false")}},
      "upcast_attention": {{(sd2 ? "true" : "false")}},
      "norm_num_groups": 32
    }
    """);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void UNetHasTheTensorCountAndKeysOfStableDiffusion(bool sd2)
    {
        using var unet = new UNet2DConditionModel(SdLayout(sd2));
        var sd = unet.state_dict();
        Assert.Equal(686, sd.Count);
        string[] expected =
        [
            "time_embedding.linear_1.weight", "conv_in.weight", "conv_norm_out.bias", "conv_out.weight",
            "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0.weight",
            "down_blocks.2.resnets.0.conv_shortcut.weight", "down_blocks.2.downsamplers.0.conv.weight",
            "down_blocks.3.resnets.1.time_emb_proj.bias",
            "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", "mid_block.resnets.1.conv2.weight",
            "up_blocks.0.resnets.2.conv_shortcut.weight", "up_blocks.0.upsamplers.0.conv.bias",
            "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v.weight", "up_blocks.3.resnets.2.norm1.weight",
        ];
        foreach (string key in expected) Assert.True(sd.ContainsKey(key), key);
        Assert.Equal(sd2 ? 2 : 4, sd["down_blocks.1.attentions.0.proj_in.weight"].dim());
        Assert.Equal(16, unet.CrossAttentionPaths.Count);
    }

    [Fact]
    public void VaeHasTheTensorCountAndKeysOfStableDiffusion()
    {
        var config = VaeConfig.Parse("""
        { "block_out_channels": [32, 64, 128, 128], "layers_per_block": 2, "norm_num_groups": 32, "latent_channels": 4 }
        """);
        using var vae = new AutoencoderKL(config);
        var sd = vae.state_dict();
        Assert.Equal(248, sd.Count);
        foreach (string key in new[]
        {
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight",
            "encoder.mid_block.attentions.0.group_norm.weight", "encoder.mid_block.attentions.0.to_out.0.weight",
            "decoder.up_blocks.0.resnets.2.conv2.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight",
            "decoder.up_blocks.3.resnets.0.conv_shortcut.weight", "quant_conv.weight", "post_quant_conv.bias",
        })
            Assert.True(sd.ContainsKey(key), key);
        Assert.DoesNotContain("encoder.down_blocks.3.downsamplers.0.conv.weight", sd.Keys);
        Assert.DoesNotContain("decoder.up_blocks.3.upsamplers.0.conv.weight", sd.Keys);
        Assert.Equal(new long[] { 8, 128, 3, 3 }, sd["encoder.conv_out.weight"].shape);
    }
}

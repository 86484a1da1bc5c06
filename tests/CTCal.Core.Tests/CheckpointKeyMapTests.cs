using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>The key table against the published SD 1.5 / SD 2.1 layouts: known pairs both ways, and every row invertible.</summary>
public sealed class CheckpointKeyMapTests
{
    private static UNetConfig Unet(bool sd2) => UNetConfig.Parse($$"""
    {
      "attention_head_dim": {{(sd2 ? "[5, 10, 20, 20]" : "8")}},
      "block_out_channels": [320, 640, 1280, 1280],
      "cross_attention_dim": {{(sd2 ? 1024 : 768)}},
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "layers_per_block": 2,
      "use_linear_projection": {{(sd2 ? "true" : "false")}}
    }
    """);

    private static readonly VaeConfig Vae = VaeConfig.Parse("""
    {
      "block_out_channels": [128, 256, 512, 512],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
      "layers_per_block": 2
    }
    """);

    private static ClipTextConfig Text(bool sd2) => ClipTextConfig.Parse(sd2
        ? """{"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16, "hidden_act": "gelu"}"""
        : """{"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}""");

    private static CheckpointKeyMap Map(bool sd2) => CheckpointKeyMap.Build(sd2 ? ModelFamily.Sd2 : ModelFamily.Sd1, Unet(sd2), Vae, Text(sd2));

    [Theory]
    [InlineData("model.diffusion_model.time_embed.0.weight", "unet", "time_embedding.linear_1.weight")]
    [InlineData("model.diffusion_model.input_blocks.0.0.bias", "unet", "conv_in.bias")]
    [InlineData("model.diffusion_model.input_blocks.1.0.in_layers.0.weight", "unet", "down_blocks.0.resnets.0.norm1.weight")]
    [InlineData("model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight", "unet", "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight")]
    [InlineData("model.diffusion_model.input_blocks.3.0.op.weight", "unet", "down_blocks.0.downsamplers.0.conv.weight")]
    [InlineData("model.diffusion_model.input_blocks.4.0.skip_connection.weight", "unet", "down_blocks.1.resnets.0.conv_shortcut.weight")]
    [InlineData("model.diffusion_model.input_blocks.11.0.out_layers.3.weight", "unet", "down_blocks.3.resnets.1.conv2.weight")]
    [InlineData("model.diffusion_model.middle_block.1.proj_in.weight", "unet", "mid_block.attentions.0.proj_in.weight")]
    [InlineData("model.diffusion_model.middle_block.2.emb_layers.1.bias", "unet", "mid_block.resnets.1.time_emb_proj.bias")]
    [InlineData("model.diffusion_model.output_blocks.2.1.conv.weight", "unet", "up_blocks.0.upsamplers.0.conv.weight")]
    [InlineData("model.diffusion_model.output_blocks.5.2.conv.bias", "unet", "up_blocks.1.upsamplers.0.conv.bias")]
    [InlineData("model.diffusion_model.output_blocks.11.1.proj_out.weight", "unet", "up_blocks.3.attentions.2.proj_out.weight")]
    [InlineData("model.diffusion_model.out.0.weight", "unet", "conv_norm_out.weight")]
    [InlineData("model.diffusion_model.out.2.weight", "unet", "conv_out.weight")]
    [InlineData("first_stage_model.encoder.down.0.downsample.conv.weight", "vae", "encoder.down_blocks.0.downsamplers.0.conv.weight")]
    [InlineData("first_stage_model.encoder.down.1.block.0.nin_shortcut.weight", "vae", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight")]
    [InlineData("first_stage_model.decoder.up.3.block.2.norm1.weight", "vae", "decoder.up_blocks.0.resnets.2.norm1.weight")]
    [InlineData("first_stage_model.decoder.up.3.upsample.conv.weight", "vae", "decoder.up_blocks.0.upsamplers.0.conv.weight")]
    [InlineData("first_stage_model.decoder.mid.attn_1.norm.bias", "vae", "decoder.mid_block.attentions.0.group_norm.bias")]
    [InlineData("first_stage_model.encoder.mid.block_2.conv1.weight", "vae", "encoder.mid_block.resnets.1.conv1.weight")]
    [InlineData("first_stage_model.encoder.norm_out.weight", "vae", "encoder.conv_norm_out.weight")]
    [InlineData("first_stage_model.post_quant_conv.weight", "vae", "post_quant_conv.weight")]
    [InlineData("cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight", "text_encoder", "text_model.encoder.layers.11.self_attn.q_proj.weight")]
    public void Sd1_published_keys_map_to_their_diffusers_names_and_back(string original, string component, string diffusers)
    {
        var map = Map(sd2: false);
        var mapped = Assert.Single(map.ToDiffusers(original, [4])!);
        Assert.Equal(component, mapped.Component);
        Assert.Equal(diffusers, mapped.Name);
        Assert.Equal(original, map.ToOriginal(component, diffusers)!.Value.Key);
    }

    [Fact]
    public void Old_transformers_clip_keys_without_text_model_are_read()
    {
        var mapped = Assert.Single(Map(sd2: false).ToDiffusers("cond_stage_model.transformer.embeddings.token_embedding.weight", [49408, 768])!);
        Assert.Equal("text_model.embeddings.token_embedding.weight", mapped.Name);
    }

    [Fact]
    public void Vae_attention_1x1_conv_weights_become_linear_weights()
    {
        var map = Map(sd2: false);
        var q = Assert.Single(map.ToDiffusers("first_stage_model.encoder.mid.attn_1.q.weight", [512, 512, 1, 1])!);
        Assert.Equal("encoder.mid_block.attentions.0.to_q.weight", q.Name);
        Assert.Equal([512L, 512], q.Shape);
        var proj = Assert.Single(map.ToDiffusers("first_stage_model.decoder.mid.attn_1.proj_out.bias", [512])!);
        Assert.Equal("decoder.mid_block.attentions.0.to_out.0.bias", proj.Name);
        var (key, rule) = map.ToOriginal("vae", "decoder.mid_block.attentions.0.to_v.weight")!.Value;
        Assert.Equal("first_stage_model.decoder.mid.attn_1.v.weight", key);
        Assert.Equal([512L, 512, 1, 1], CheckpointKeyMap.OriginalShape(rule, [512, 512]));
    }

    [Fact]
    public void OpenClip_fused_in_projection_splits_into_q_k_v_and_the_24th_block_is_ignored()
    {
        var map = Map(sd2: true);
        var parts = map.ToDiffusers("cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight", [3072, 1024])!;
        Assert.Equal(["text_model.encoder.layers.22.self_attn.q_proj.weight", "text_model.encoder.layers.22.self_attn.k_proj.weight",
            "text_model.encoder.layers.22.self_attn.v_proj.weight"], parts.Select(p => p.Name));
        Assert.All(parts, p => Assert.Equal([1024L, 1024], p.Shape));
        Assert.Equal([0L, 1024 * 1024, 2 * 1024 * 1024], parts.Select(p => p.ElementOffset));
        var bias = map.ToDiffusers("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias", [3072])!;
        Assert.Equal([0L, 1024, 2048], bias.Select(p => p.ElementOffset));
        Assert.Equal("text_model.embeddings.position_embedding.weight", Assert.Single(map.ToDiffusers("cond_stage_model.model.positional_embedding", [77, 1024])!).Name);
        Assert.Equal("text_model.final_layer_norm.weight", Assert.Single(map.ToDiffusers("cond_stage_model.model.ln_final.weight", [1024])!).Name);
        Assert.Equal("text_model.encoder.layers.3.mlp.fc1.bias", Assert.Single(map.ToDiffusers("cond_stage_model.model.transformer.resblocks.3.mlp.c_fc.bias", [4096])!).Name);
        Assert.True(map.IsIgnored("cond_stage_model.model.transformer.resblocks.23.ln_1.weight"));
        Assert.False(map.IsIgnored("cond_stage_model.model.transformer.resblocks.22.ln_1.weight"));
        Assert.True(map.IsIgnored("cond_stage_model.model.text_projection"));
        Assert.Null(map.ToDiffusers("cond_stage_model.model.transformer.resblocks.23.ln_1.weight", [1024]));
        Assert.Throws<FormatException>(() => map.ToDiffusers("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias", [100]));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Every_row_reads_back_to_itself(bool sd2)
    {
        var map = Map(sd2);
        foreach (var rule in map.Rules)
        {
            var back = map.ToOriginal(rule.Component, rule.DiffusersPrefix + ".weight");
            Assert.NotNull(back);
            var mapped = map.ToDiffusers(back!.Value.Key, rule.Transform == KeyTransform.FusedPart ? [3, 2] : [2]);
            Assert.Contains(mapped!, m => m.Component == rule.Component && m.Name == rule.DiffusersPrefix + ".weight");
        }
        // no row is listed twice
        Assert.Equal(map.Rules.Count, map.Rules.Distinct().Count());
    }
}

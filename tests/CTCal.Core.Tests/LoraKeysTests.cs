using CTCal.Core.Models;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>The LoRA key grammar: every spelling formats and parses back to the same component, module and part.</summary>
public sealed class LoraKeysTests
{
    // real SD 1.x module paths (diffusers UNet, transformers CLIP text model)
    public static readonly TheoryData<string, string> Modules = new()
    {
        { LoraKeys.UNet, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q" },
        { LoraKeys.UNet, "down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0" },
        { LoraKeys.UNet, "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj" },
        { LoraKeys.UNet, "up_blocks.3.attentions.2.proj_in" },
        { LoraKeys.UNet, "conv_in" },
        { LoraKeys.TextEncoder, "text_model.encoder.layers.0.self_attn.q_proj" },
        { LoraKeys.TextEncoder, "text_model.encoder.layers.11.mlp.fc2" },
    };

    private static readonly string[] UNetWeights =
    [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight",
        "down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0.weight",
        "down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0.bias",
        "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
        "up_blocks.3.attentions.2.proj_in.weight",
        "conv_in.weight",
    ];

    private static readonly string[] TextWeights =
    [
        "text_model.encoder.layers.0.self_attn.q_proj.weight",
        "text_model.encoder.layers.11.mlp.fc2.weight",
    ];

    [Theory]
    [MemberData(nameof(Modules))]
    public void Every_spelling_round_trips(string component, string module)
    {
        var resolver = new LoraModuleResolver(component == LoraKeys.UNet ? UNetWeights : TextWeights);
        foreach (var spelling in Enum.GetValues<LoraSpelling>())
        foreach (var part in Enum.GetValues<LoraPart>())
        {
            string key = LoraKeys.Format(component, module, part, spelling);
            Assert.True(LoraKeys.TryParse(key, out var parsed), key);
            Assert.Equal(component, parsed.Component);
            Assert.Equal(part, parsed.Part);
            Assert.Equal(key, parsed.Key);
            // alpha is spelled the same in peft and diffusers; reported as peft
            Assert.Equal(spelling == LoraSpelling.Diffusers && part == LoraPart.Alpha ? LoraSpelling.Peft : spelling, parsed.Spelling);
            Assert.Equal(module, resolver.Resolve(parsed));
            if (spelling != LoraSpelling.Kohya) Assert.Equal(module, parsed.Module);
        }
    }

    [Theory]
    [InlineData("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora_A.weight", "unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q", LoraPart.Down, LoraSpelling.Peft)]
    [InlineData("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", "text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", LoraPart.Up, LoraSpelling.Peft)]
    [InlineData("mid_block.attentions.0.transformer_blocks.0.attn1.to_v.lora.down.weight", "unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_v", LoraPart.Down, LoraSpelling.Diffusers)]
    [InlineData("mid_block.attentions.0.transformer_blocks.0.attn1.to_v.alpha", "unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_v", LoraPart.Alpha, LoraSpelling.Peft)]
    [InlineData("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q.lora_up.weight", "unet", "down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q", LoraPart.Up, LoraSpelling.Kohya)]
    [InlineData("lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha", "text_encoder", "text_model_encoder_layers_0_self_attn_q_proj", LoraPart.Alpha, LoraSpelling.Kohya)]
    public void Known_keys_parse(string key, string component, string module, LoraPart part, LoraSpelling spelling)
    {
        Assert.Equal(new LoraKey(key, component, module, part, spelling), LoraKeys.Parse(key));
    }

    [Theory]
    [InlineData("transformer.transformer_blocks.0.attn.to_q.lora_A.weight", "transformer_blocks.0.attn.to_q", LoraPart.Down, LoraSpelling.Peft)]
    [InlineData("transformer.transformer_blocks.11.attn.add_k_proj.lora_B.weight", "transformer_blocks.11.attn.add_k_proj", LoraPart.Up, LoraSpelling.Peft)]
    [InlineData("transformer.transformer_blocks.2.ff_context.net.2.lora.up.weight", "transformer_blocks.2.ff_context.net.2", LoraPart.Up, LoraSpelling.Diffusers)]
    [InlineData("transformer.proj_out.alpha", "proj_out", LoraPart.Alpha, LoraSpelling.Peft)]
    public void SD3_transformer_keys_parse_and_format_in_the_dotted_spellings(string key, string module, LoraPart part, LoraSpelling spelling)
    {
        Assert.Equal(new LoraKey(key, LoraKeys.Transformer, module, part, spelling), LoraKeys.Parse(key));
        Assert.Equal(key, LoraKeys.Format(LoraKeys.Transformer, module, part, spelling));
        Assert.True(LoraKeys.IsLoraFile([key.Replace(".alpha", ".lora_A.weight", StringComparison.Ordinal)]));
    }

    [Fact]
    public void SD3_second_text_encoder_keys_parse()
    {
        const string key = "text_encoder_2.text_model.encoder.layers.3.self_attn.out_proj.lora_B.weight";
        Assert.Equal(new LoraKey(key, LoraKeys.TextEncoder2, "text_model.encoder.layers.3.self_attn.out_proj", LoraPart.Up, LoraSpelling.Peft), LoraKeys.Parse(key));
        Assert.Equal(key, LoraKeys.Format(LoraKeys.TextEncoder2, "text_model.encoder.layers.3.self_attn.out_proj", LoraPart.Up, LoraSpelling.Peft));
        Assert.Throws<ArgumentException>(() => LoraKeys.Format(LoraKeys.TextEncoder2, "text_model.encoder.layers.3.self_attn.out_proj", LoraPart.Up, LoraSpelling.Kohya));
    }

    [Fact]
    public void SD3_transformer_has_no_kohya_spelling()
    {
        var e = Assert.Throws<ArgumentException>(() => LoraKeys.Format(LoraKeys.Transformer, "transformer_blocks.0.attn.to_q", LoraPart.Down, LoraSpelling.Kohya));
        Assert.Contains("kohya", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Kohya_names_are_written_with_underscores_and_the_component_prefix()
    {
        Assert.Equal("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
            LoraKeys.Format(LoraKeys.TextEncoder, "text_model.encoder.layers.0.self_attn.q_proj", LoraPart.Down, LoraSpelling.Kohya));
        Assert.Equal("lora_unet_mid_block_attentions_0_proj_in.alpha",
            LoraKeys.Format(LoraKeys.UNet, "mid_block.attentions.0.proj_in", LoraPart.Alpha, LoraSpelling.Kohya));
        Assert.Equal("unet.conv_in.lora_A.weight", LoraKeys.Format(LoraKeys.UNet, "conv_in", LoraPart.Down, LoraSpelling.Peft));
        Assert.Throws<ArgumentException>(() => LoraKeys.Format("vae", "conv_in", LoraPart.Down, LoraSpelling.Peft));
    }

    [Theory]
    [InlineData("down_blocks.0.resnets.0.conv1.weight")]
    [InlineData("lora_unet_conv_in.weight")]
    [InlineData("lora_unet_.lora_down.weight")]
    [InlineData(".lora_A.weight")]
    [InlineData("text_encoder..lora_B.weight")]
    public void Other_keys_are_not_lora_keys(string key)
    {
        Assert.False(LoraKeys.TryParse(key, out _));
        Assert.Contains(key, Assert.Throws<LoraKeyException>(() => LoraKeys.Parse(key)).Message);
    }

    [Fact]
    public void Unknown_or_ambiguous_kohya_module_is_refused_naming_the_key()
    {
        var resolver = new LoraModuleResolver(UNetWeights);
        const string unknown = "lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn2_to_q.lora_down.weight";
        var e = Assert.Throws<LoraKeyException>(() => resolver.Resolve(LoraKeys.Parse(unknown)));
        Assert.Contains(unknown, e.Message);

        var ambiguous = new LoraModuleResolver(["a.b_c.weight", "a_b.c.weight"]);
        const string key = "lora_unet_a_b_c.lora_up.weight";
        e = Assert.Throws<LoraKeyException>(() => ambiguous.Resolve(LoraKeys.Parse(key)));
        Assert.Contains(key, e.Message);
        Assert.Contains("a.b_c", e.Message);
        Assert.Contains("a_b.c", e.Message);
    }

    [Theory]
    [InlineData(true, "unet.a.to_q.lora_A.weight")]
    [InlineData(true, "text_encoder.a.q_proj.lora_B.weight")]
    [InlineData(true, "a.to_q.lora.down.weight")]
    [InlineData(true, "a.to_q.lora.up.weight")]
    [InlineData(true, "lora_unet_a_to_q.lora_down.weight")]
    [InlineData(true, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight")]
    [InlineData(false, "a.to_q.alpha")]
    [InlineData(false, "down_blocks.0.attentions.0.proj_in.weight")]
    public void Is_lora_file_accepts_every_spelling(bool expected, string key)
    {
        Assert.Equal(expected, LoraKeys.IsLoraFile([key, "conv_in.bias"]));
    }
}

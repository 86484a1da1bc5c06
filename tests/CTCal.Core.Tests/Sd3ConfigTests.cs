using CTCal.Core.Diffusers;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>SD3-medium's published component configs (diffusers layout) and the refusals around them.</summary>
public sealed class Sd3ConfigTests
{
    [Fact]
    public void Sd3VaeConfigReadsShiftScaleAndNoQuantConvs()
    {
        var c = VaeConfig.Parse("""
        {
          "_class_name": "AutoencoderKL", "_diffusers_version": "0.29.0.dev0", "act_fn": "silu",
          "block_out_channels": [128, 256, 512, 512],
          "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
          "force_upcast": true, "in_channels": 3, "latent_channels": 16, "latents_mean": null, "latents_std": null,
          "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024,
          "scaling_factor": 1.5305, "shift_factor": 0.0609,
          "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
          "use_post_quant_conv": false, "use_quant_conv": false
        }
        """, "sd3/vae/config.json");
        Assert.Equal(16, c.LatentChannels);
        Assert.Equal(1.5305, c.ScalingFactor);
        Assert.Equal(0.0609, c.ShiftFactor);
        Assert.False(c.UseQuantConv);
        Assert.False(c.UsePostQuantConv);
        Assert.Equal(8, c.DownscaleFactor);
    }

    [Theory]
    [InlineData("\"shift_factor\": null,")]
    [InlineData("")]
    public void AbsentShiftIsZeroAndQuantConvsDefaultOn(string shift)
    {
        var c = VaeConfig.Parse($$"""{ {{shift}} "block_out_channels": [32, 64], "norm_num_groups": 16 }""");
        Assert.Equal(0.0, c.ShiftFactor);
        Assert.True(c.UseQuantConv);
        Assert.True(c.UsePostQuantConv);
        Assert.Equal(0.18215, c.ScalingFactor);
    }

    [Fact]
    public void T5XxlConfigReads()
    {
        var c = T5Config.Parse("""
        {
          "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 10240, "d_kv": 64, "d_model": 4096,
          "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1, "eos_token_id": 1,
          "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": true, "is_gated_act": true,
          "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24,
          "output_past": true, "pad_token_id": 0, "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
          "tie_word_embeddings": false, "torch_dtype": "float16", "use_cache": true, "vocab_size": 32128
        }
        """);
        Assert.Equal(4096, c.DModel);
        Assert.Equal(64, c.DKv);
        Assert.Equal(4096, c.InnerDim);
        Assert.Equal(10240, c.DFf);
        Assert.Equal(24, c.NumLayers);
        Assert.Equal(64, c.NumHeads);
        Assert.Equal(32, c.RelativeAttentionNumBuckets);
        Assert.Equal(128, c.RelativeAttentionMaxDistance);
        Assert.Equal(T5Config.GatedGelu, c.FeedForwardProj);
        Assert.Equal(1e-6, c.LayerNormEpsilon);
        Assert.Equal(32128, c.VocabSize);
    }

    [Theory]
    [InlineData("\"feed_forward_proj\": \"relu\",", "feed_forward_proj", "'relu'")]
    [InlineData("", "feed_forward_proj", "'relu'")] // transformers' default is relu (T5 v1.0)
    [InlineData("\"feed_forward_proj\": \"gated-silu\",", "feed_forward_proj", "'gated-silu'")]
    [InlineData("\"feed_forward_proj\": \"gated-gelu\", \"relative_attention_num_buckets\": 7,", "relative_attention_num_buckets", "even")]
    public void T5ConfigRefusalsNameTheFieldAndFile(string extra, string field, string text)
    {
        var e = Assert.Throws<DiffusersConfigException>(() => T5Config.Parse(
            $$"""{ {{extra}} "d_model": 8, "d_kv": 4, "d_ff": 16, "num_layers": 1, "num_heads": 2 }""", "t5/text_encoder_3/config.json"));
        Assert.Equal(field, e.Field);
        Assert.Equal("t5/text_encoder_3/config.json", e.File);
        Assert.Contains(text, e.Message);
        Assert.Contains("t5/text_encoder_3/config.json", e.Message);
    }

    [Fact]
    public void ClipGConfigReadsItsProjection()
    {
        var c = ClipTextConfig.Parse("""
        {
          "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
          "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 1280, "initializer_factor": 1.0, "initializer_range": 0.02,
          "intermediate_size": 5120, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
          "num_attention_heads": 20, "num_hidden_layers": 32, "pad_token_id": 1, "projection_dim": 1280, "vocab_size": 49408
        }
        """, "sd3/text_encoder_2/config.json");
        Assert.Equal(1280, c.HiddenSize);
        Assert.Equal(1280, c.ProjectionDim);
        Assert.Equal(64, c.HeadDim);
        Assert.Equal("gelu", c.HiddenAct);
        Assert.Equal(32, c.NumHiddenLayers);
        var e = Assert.Throws<DiffusersConfigException>(() => ClipTextConfig.Parse(
            """{ "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "projection_dim": 0 }"""));
        Assert.Equal("projection_dim", e.Field);
    }
}

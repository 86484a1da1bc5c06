using Xunit;
using CTCal.Core.Diffusers;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>Small model configs for shape, naming and gradient tests (no weights needed).</summary>
internal static class ModelTestConfigs
{
    /// <summary>SD 2.x style: linear projections, per-block heads [2,4,8] given as attention_head_dim, upcast attention, 3 levels, 2 layers per block.</summary>
    public static UNetConfig Sd2Style(string upFirst = "UpBlock2D") => UNetConfig.Parse($$"""
    {
      "_class_name": "UNet2DConditionModel",
      "block_out_channels": [16, 32, 64],
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["{{upFirst}}", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "layers_per_block": 2,
      "attention_head_dim": [2, 4, 8],
      "cross_attention_dim": 24,
      "norm_num_groups": 8,
      "use_linear_projection": true,
      "upcast_attention": true,
      "in_channels": 4,
      "out_channels": 4,
      "sample_size": 16
    }
    """, "sd2-style/unet/config.json");

    public static ClipTextConfig GeluClip() => ClipTextConfig.Parse("""
    {
      "vocab_size": 100, "hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 2,
      "max_position_embeddings": 12, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
      "bos_token_id": 98, "eos_token_id": 99, "pad_token_id": 0, "projection_dim": 16
    }
    """, "gelu-clip/text_encoder/config.json");

    /// <summary>Loads <paramref name="folder"/>'s weights strictly through <see cref="CTCal.Trainer.Networks.DiffusersWeights"/>.</summary>
    public static void LoadWeights(TorchSharp.torch.nn.Module module, string folder) =>
        CTCal.Trainer.Networks.DiffusersWeights.Load(module, folder);

    public static string TinySd1 => Path.Combine(CTCal.Tests.TestPaths.Fixtures, "tiny-sd1");

    /// <summary>The SD2-style diffusers folder (linear projections, per-block heads, upcast attention, gelu CLIP padded with 0, v-prediction).</summary>
    public static string TinySd2Style => Path.Combine(CTCal.Tests.TestPaths.Fixtures, "tiny-sd2-style");
}

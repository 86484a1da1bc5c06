using CTCal.Core.Diffusers;

namespace CTCal.Bench.Inference;

/// <summary>
/// A UNet config.json to benchmark and its latent size (image size = 8 x latent for SD's VAE). A config with a
/// <paramref name="Reference"/> model gets its weights from CTCal.Export's streaming <c>RandomModelWriter</c> instead of a
/// TorchSharp model (full size: ONNX Runtime only, <c>--no-torch</c>).
/// </summary>
internal sealed record BenchConfig(string Name, string Json, int Latent, ReferenceModel? Reference = null)
{
    /// <summary>Stable Diffusion 1.5's UNet (860 M parameters) at a 32x32 latent (256x256 images); ONNX Runtime only.</summary>
    public static BenchConfig Sd15 { get; } = new("sd15", ReferenceModels.Sd15.UnetConfigJson, 32, ReferenceModels.Sd15);

    /// <summary>The tiny SD1-style UNet of the test fixtures (32/64 channels, 1 layer per block), 16x16 latent.</summary>
    public static BenchConfig Tiny { get; } = new("tiny", """
    {
      "_class_name": "UNet2DConditionModel",
      "attention_head_dim": 4,
      "block_out_channels": [32, 64],
      "cross_attention_dim": 32,
      "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
      "in_channels": 4,
      "out_channels": 4,
      "layers_per_block": 1,
      "norm_num_groups": 8,
      "sample_size": 16
    }
    """, 16);

    /// <summary>Mid-size SD1-style UNet: 128/256/512 channels, 2 layers per block, 8 heads, cross_attention_dim 256, 32x32 latent (256x256 images).</summary>
    public static BenchConfig Mid { get; } = new("mid", """
    {
      "_class_name": "UNet2DConditionModel",
      "attention_head_dim": 8,
      "block_out_channels": [128, 256, 512],
      "cross_attention_dim": 256,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "in_channels": 4,
      "out_channels": 4,
      "layers_per_block": 2,
      "norm_num_groups": 32,
      "sample_size": 32
    }
    """, 32);
}

using CTCal.Core.Diffusers;

namespace CTCal.Bench.Inference;

/// <summary>
/// A denoising network's config.json to benchmark (<paramref name="Family"/> unet: a UNet2DConditionModel; sd3: an
/// SD3Transformer2DModel) and its latent size (image size = 8 x latent for the VAEs of both). An
/// <paramref name="OrtOnly"/> config is too large to hold a TorchSharp model beside the ONNX Runtime sessions: it is
/// timed in ONNX Runtime only and needs <c>--no-torch</c> (its weights are streamed to disk by the exporter's
/// <c>RandomWeights</c> either way).
/// </summary>
internal sealed record BenchConfig(string Family, string Name, string Json, int Latent, bool OrtOnly = false)
{
    /// <summary>Every config, both families (a getter, not an initializer: the configs below are initialized after it).</summary>
    public static IReadOnlyList<BenchConfig> All => [Tiny, Mid, Sd15, Sd3Tiny, Sd3Mid];

    /// <summary>The config named <paramref name="name"/> (unet: tiny, mid, sd15; sd3: tiny, mid) of <paramref name="family"/>, or null.</summary>
    public static BenchConfig? Find(string family, string name) => All.FirstOrDefault(c => c.Family == family && c.Name == name);

    /// <summary>The names of <paramref name="family"/>'s configs, comma-separated (for messages).</summary>
    public static string Names(string family) => string.Join(", ", All.Where(c => c.Family == family).Select(c => c.Name));

    /// <summary>The tiny SD1-style UNet of the test fixtures (32/64 channels, 1 layer per block), 16x16 latent.</summary>
    public static BenchConfig Tiny { get; } = new("unet", "tiny", """
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
    public static BenchConfig Mid { get; } = new("unet", "mid", """
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

    /// <summary>Stable Diffusion 1.5's UNet (the published config, 860 M parameters) at a 32x32 latent (256x256 images); ONNX Runtime only.</summary>
    public static BenchConfig Sd15 { get; } = new("unet", "sd15", ReferenceModels.Sd15.UnetConfigJson, 32, OrtOnly: true);

    /// <summary>The tiny-sd3 test fixture's transformer (2 layers, 4 heads x 8 = 32 wide, joint_attention_dim 32, pooled 16, 4 latent channels), 16x16 latent.</summary>
    public static BenchConfig Sd3Tiny { get; } = new("sd3", "tiny", """
    {
      "_class_name": "SD3Transformer2DModel",
      "attention_head_dim": 8,
      "caption_projection_dim": 32,
      "in_channels": 4,
      "joint_attention_dim": 32,
      "num_attention_heads": 4,
      "num_layers": 2,
      "out_channels": 4,
      "patch_size": 2,
      "pooled_projection_dim": 16,
      "pos_embed_max_size": 32,
      "sample_size": 16
    }
    """, 16);

    /// <summary>
    /// Mid-size SD3 transformer: SD3-medium's layout and input widths (16 latent channels, patch 2, head dim 64,
    /// joint_attention_dim 4096, pooled 2048) at 12 layers of 6 heads (384 wide), 32x32 latent (256x256 images, 256 image tokens).
    /// </summary>
    public static BenchConfig Sd3Mid { get; } = new("sd3", "mid", """
    {
      "_class_name": "SD3Transformer2DModel",
      "attention_head_dim": 64,
      "caption_projection_dim": 384,
      "in_channels": 16,
      "joint_attention_dim": 4096,
      "num_attention_heads": 6,
      "num_layers": 12,
      "out_channels": 16,
      "patch_size": 2,
      "pooled_projection_dim": 2048,
      "pos_embed_max_size": 64,
      "sample_size": 32
    }
    """, 32);
}

namespace CTCal.Tests;

/// <summary>
/// The config.json texts of one small pipeline (UNet, CLIP text encoder, VAE) and its test input sizes; shared by the
/// test projects (tests/Shared) so the tiny SD1- and SD2-style configurations are written once.
/// </summary>
public sealed record TinyConfigs(string Name, string UNet, string TextEncoder, string Vae, int LatentHeight, int LatentWidth)
{
    /// <summary>SD 1.x style: conv projections, one head count for all blocks, quick_gelu CLIP with the legacy eos_token_id 2 (argmax pooling), 2-level VAE.</summary>
    public static TinyConfigs Sd1 { get; } = new("sd1", """
    {
      "_class_name": "UNet2DConditionModel",
      "act_fn": "silu",
      "attention_head_dim": 4,
      "block_out_channels": [32, 64],
      "cross_attention_dim": 32,
      "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
      "flip_sin_to_cos": true,
      "freq_shift": 0,
      "in_channels": 4,
      "out_channels": 4,
      "layers_per_block": 1,
      "norm_num_groups": 8,
      "sample_size": 16,
      "use_linear_projection": false,
      "upcast_attention": false
    }
    """, """
    {
      "architectures": ["CLIPTextModel"],
      "model_type": "clip_text_model",
      "vocab_size": 1000,
      "hidden_size": 32,
      "intermediate_size": 37,
      "num_hidden_layers": 2,
      "num_attention_heads": 4,
      "max_position_embeddings": 16,
      "hidden_act": "quick_gelu",
      "layer_norm_eps": 1e-05,
      "bos_token_id": 0,
      "eos_token_id": 2,
      "pad_token_id": 1,
      "projection_dim": 32
    }
    """, """
    {
      "_class_name": "AutoencoderKL",
      "act_fn": "silu",
      "block_out_channels": [32, 64],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
      "in_channels": 3,
      "out_channels": 3,
      "latent_channels": 4,
      "layers_per_block": 1,
      "norm_num_groups": 16,
      "sample_size": 32,
      "scaling_factor": 0.18215
    }
    """, LatentHeight: 8, LatentWidth: 12);

    /// <summary>
    /// SD 2.x style: linear projections, per-block heads from an attention_head_dim list, upcast_attention, 3 levels with 2
    /// layers per block, gelu CLIP pooling at the first eos_token_id (not the largest id), 3-level VAE with 2 layers per block.
    /// </summary>
    public static TinyConfigs Sd2 { get; } = new("sd2", """
    {
      "_class_name": "UNet2DConditionModel",
      "act_fn": "silu",
      "attention_head_dim": [2, 4, 8],
      "block_out_channels": [16, 32, 64],
      "cross_attention_dim": 24,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "flip_sin_to_cos": true,
      "freq_shift": 0,
      "in_channels": 4,
      "out_channels": 4,
      "layers_per_block": 2,
      "norm_num_groups": 8,
      "sample_size": 16,
      "use_linear_projection": true,
      "upcast_attention": true
    }
    """, """
    {
      "architectures": ["CLIPTextModel"],
      "model_type": "clip_text_model",
      "vocab_size": 1000,
      "hidden_size": 24,
      "intermediate_size": 60,
      "num_hidden_layers": 2,
      "num_attention_heads": 3,
      "max_position_embeddings": 16,
      "hidden_act": "gelu",
      "layer_norm_eps": 1e-05,
      "bos_token_id": 499,
      "eos_token_id": 500,
      "pad_token_id": 0,
      "projection_dim": 24
    }
    """, """
    {
      "_class_name": "AutoencoderKL",
      "act_fn": "silu",
      "block_out_channels": [16, 32, 64],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
      "in_channels": 3,
      "out_channels": 3,
      "latent_channels": 4,
      "layers_per_block": 2,
      "norm_num_groups": 8,
      "sample_size": 32,
      "scaling_factor": 0.18215
    }
    """, LatentHeight: 8, LatentWidth: 12);

    public override string ToString() => Name;
}

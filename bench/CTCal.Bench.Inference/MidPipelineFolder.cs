using CTCal.Core.Diffusers;
using CTCal.Export.Fixtures;

namespace CTCal.Bench.Inference;

/// <summary>
/// Writes a complete diffusers Stable-Diffusion folder for the mid-size config with seeded random weights: the mid UNet
/// (<see cref="BenchConfig.Mid"/>), a CLIP text encoder whose hidden size (256) matches the UNet's cross_attention_dim,
/// a small 4-level AutoencoderKL (VAE scale factor 8: 256x256 images and 32x32 latents), the CLIP BPE tokenizer files,
/// a PNDM scheduler config and model_index.json.
/// </summary>
internal static class MidPipelineFolder
{
    /// <summary>CLIP text encoder, SD1 layout at a smaller width: hidden 256 = the UNet's cross_attention_dim.</summary>
    public const string TextEncoderJson = """
        {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 256,
         "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4, "max_position_embeddings": 77,
         "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
         "projection_dim": 256}
        """;

    /// <summary>AutoencoderKL with SD's 4 levels (downscale 2^3 = 8) and small channels.</summary>
    public const string VaeJson = """
        {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [32, 64, 128, 128],
         "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
         "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
         "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
         "sample_size": 256, "scaling_factor": 0.18215}
        """;

    /// <summary>Writes the folder at <paramref name="folder"/> (must not exist or be empty) with the exporter's <see cref="RandomModelWriter"/>.</summary>
    /// <param name="tokenizerFolder">Folder with the CLIP tokenizer's vocab.json and merges.txt.</param>
    /// <returns>Parameter counts of the UNet, text encoder and VAE.</returns>
    /// <remarks>SD 1.5's scheduler (PNDM, scaled-linear betas, epsilon), model_index.json and tokenizer configs, with the mid networks.</remarks>
    public static (long Unet, long TextEncoder, long Vae) Build(string folder, string tokenizerFolder, int seed)
    {
        var model = ReferenceModels.Sd15 with
        {
            Kind = "mid",
            Source = "CTCal.Bench.Inference mid config",
            UnetConfigJson = BenchConfig.Mid.Json,
            TextEncoderConfigJson = TextEncoderJson,
            VaeConfigJson = VaeJson,
        };
        RandomModelWriter.Write(model, folder, (ulong)seed, tokenizerFolder);
        long Count(string component) => RandomModelWriter.Tensors(model, component).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        return (Count("unet"), Count("text_encoder"), Count("vae"));
    }
}

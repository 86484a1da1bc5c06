using System.Text.Json.Nodes;
using CTCal.Core.Diffusers;
using CTCal.Core.IO;
using CTCal.Trainer.Networks;
using static TorchSharp.torch;

namespace CTCal.Bench.Inference;

/// <summary>
/// Writes a complete diffusers Stable-Diffusion folder for the mid-size config with seeded random weights: the mid UNet
/// (<see cref="BenchConfig.Mid"/>), a CLIP text encoder whose hidden size (256) matches the UNet's cross_attention_dim,
/// a small 4-level AutoencoderKL (VAE scale factor 8: 256x256 images and 32x32 latents), the CLIP BPE tokenizer files,
/// a PNDM scheduler config and model_index.json. The TorchSharp modules are disposed before returning.
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

    /// <summary>SD1's scheduler config (PNDM, scaled-linear betas, epsilon prediction).</summary>
    public const string SchedulerJson = """
        {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
         "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true,
         "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null}
        """;

    /// <summary>Writes the folder at <paramref name="folder"/> (created; must not hold a model already).</summary>
    /// <param name="tokenizerFolder">Folder with the CLIP tokenizer's vocab.json and merges.txt (and optionally its config files).</param>
    /// <returns>Parameter counts of the UNet, text encoder and VAE.</returns>
    public static (long Unet, long TextEncoder, long Vae) Build(string folder, string tokenizerFolder, int seed)
    {
        foreach (string required in new[] { "vocab.json", "merges.txt" })
        {
            if (!File.Exists(Path.Combine(tokenizerFolder, required)))
            {
                throw new FileNotFoundException($"tokenizer folder {tokenizerFolder} has no {required}", Path.Combine(tokenizerFolder, required));
            }
        }

        if (File.Exists(Path.Combine(folder, "model_index.json")))
        {
            throw new IOException($"{folder} already holds a model (model_index.json); pick an empty folder");
        }

        using var scope = NewDisposeScope();
        Write(folder, "unet/config.json", BenchConfig.Mid.Json);
        Write(folder, "text_encoder/config.json", TextEncoderJson);
        Write(folder, "vae/config.json", VaeJson);
        Write(folder, "scheduler/scheduler_config.json", SchedulerJson);

        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(folder, "unet", "config.json")));
        using var text = new CLIPTextModel(ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json")));
        using var vae = new AutoencoderKL(VaeConfig.Load(Path.Combine(folder, "vae", "config.json")));
        RandomWeights.Fill(unet, seed);
        RandomWeights.Fill(text, seed + 1);
        RandomWeights.Fill(vae, seed + 2);
        DiffusersWeights.Save(unet, Path.Combine(folder, "unet", "diffusion_pytorch_model.safetensors"));
        DiffusersWeights.Save(text, Path.Combine(folder, "text_encoder", "model.safetensors"));
        DiffusersWeights.Save(vae, Path.Combine(folder, "vae", "diffusion_pytorch_model.safetensors"));

        Directory.CreateDirectory(Path.Combine(folder, "tokenizer"));
        foreach (string file in Directory.EnumerateFiles(tokenizerFolder))
        {
            File.Copy(file, Path.Combine(folder, "tokenizer", Path.GetFileName(file)), overwrite: true);
        }

        var index = new JsonObject
        {
            ["_class_name"] = "StableDiffusionPipeline",
            ["_diffusers_version"] = "0.27.2",
            ["requires_safety_checker"] = false,
            ["scheduler"] = new JsonArray("diffusers", "PNDMScheduler"),
            ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
            ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
            ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
            ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
        };
        Write(folder, "model_index.json", index.ToJsonString());
        return (Count(unet), Count(text), Count(vae));
    }

    private static long Count(TorchSharp.torch.nn.Module module) => module.parameters().Sum(p => p.numel());

    private static void Write(string folder, string relative, string text) => AtomicFile.WriteText(Path.Combine(folder, relative), text);
}

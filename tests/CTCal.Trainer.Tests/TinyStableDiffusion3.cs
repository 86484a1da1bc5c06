using System.Text.Json.Nodes;
using CTCal.Core.Diffusers;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>
/// A tiny SD3-style diffusers folder written by the tests: model_index.json (StableDiffusion3Pipeline, no T5), a 2-block
/// 16-channel SD3 transformer, CLIP-L and CLIP-G with projection (hidden 16 each, so 32 = joint_attention_dim; projections
/// 8 + 8 = pooled_projection_dim), a 16-channel VAE with SD3's shift and scale and no quant convs (scale factor 2), the
/// flow-matching scheduler (shift 3) and the real CLIP BPE tokenizer (tokenizer_2 pads with "!", as SD3's does). Weights are
/// deterministic random values from the seed, written with the project's safetensors writer.
/// </summary>
internal static class TinyStableDiffusion3
{
    public const string TransformerJson = """
        {"_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.29.2", "attention_head_dim": 8,
         "caption_projection_dim": 32, "in_channels": 16, "joint_attention_dim": 32, "num_attention_heads": 4, "num_layers": 2,
         "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 16, "pos_embed_max_size": 32, "sample_size": 8}
        """;

    public const string ClipJson = """
        {"architectures": ["CLIPTextModelWithProjection"], "vocab_size": 49408, "hidden_size": 16, "intermediate_size": 37,
         "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
         "projection_dim": 8, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
        """;

    public const string VaeJson = """
        {"_class_name": "AutoencoderKL", "block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
         "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"], "latent_channels": 16, "layers_per_block": 1,
         "norm_num_groups": 16, "sample_size": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609,
         "use_quant_conv": false, "use_post_quant_conv": false}
        """;

    public const string SchedulerJson = """
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.29.2", "num_train_timesteps": 1000, "shift": 3.0}
        """;

    public const string ModelIndexJson = """
        {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.29.2",
         "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
         "text_encoder": ["transformers", "CLIPTextModelWithProjection"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
         "text_encoder_3": [null, null], "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
         "tokenizer_3": [null, null], "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}
        """;

    /// <summary>Writes the folder under <paramref name="root"/> (weights from <paramref name="seed"/>) and returns its path.</summary>
    public static string Write(string root, int seed = 0)
    {
        string folder = Path.Combine(root, "tiny-sd3");
        void Json(string component, string file, string json)
        {
            Directory.CreateDirectory(Path.Combine(folder, component));
            File.WriteAllText(Path.Combine(folder, component, file), json);
        }
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "model_index.json"), ModelIndexJson);
        Json("transformer", "config.json", TransformerJson);
        Json("text_encoder", "config.json", ClipJson);
        Json("text_encoder_2", "config.json", ClipJson);
        Json("vae", "config.json", VaeJson);
        Json("scheduler", "scheduler_config.json", SchedulerJson);
        string tokenizer = Path.Combine(TestPaths.Fixtures, "tiny-sd1", "tokenizer");
        foreach (string name in new[] { "tokenizer", "tokenizer_2" })
        {
            Directory.CreateDirectory(Path.Combine(folder, name));
            foreach (string file in Directory.GetFiles(tokenizer)) File.Copy(file, Path.Combine(folder, name, Path.GetFileName(file)));
        }
        // SD3's tokenizer_2 (CLIP-G) pads with "!" (id 0).
        var special = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "tokenizer_2", "special_tokens_map.json")))!.AsObject();
        special["pad_token"] = "!";
        File.WriteAllText(Path.Combine(folder, "tokenizer_2", "special_tokens_map.json"), special.ToJsonString());

        // Weights from a private generator: tests run in parallel and torch's global RNG is shared.
        using var generator = new Generator((ulong)seed + 11);
        using (var transformer = new SD3Transformer2DModel(SD3TransformerConfig.Parse(TransformerJson)))
        {
            DeterministicInit.Reset(transformer, generator);
            DiffusersWeights.Save(transformer, Path.Combine(folder, "transformer", "diffusion_pytorch_model.safetensors"));
        }
        foreach (string name in new[] { "text_encoder", "text_encoder_2" })
        {
            using var clip = new CLIPTextModelWithProjection(ClipTextConfig.Parse(ClipJson));
            DeterministicInit.Reset(clip, generator);
            DiffusersWeights.Save(clip, Path.Combine(folder, name, "model.safetensors"));
        }
        using (var vae = new AutoencoderKL(VaeConfig.Parse(VaeJson)))
        {
            DeterministicInit.Reset(vae, generator);
            DiffusersWeights.Save(vae, Path.Combine(folder, "vae", "diffusion_pytorch_model.safetensors"));
        }
        return folder;
    }
}

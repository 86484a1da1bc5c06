using CTCal.Core.Diffusers;
using CTCal.Export.Fixtures;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;

namespace CTCal.Tests;

/// <summary>
/// A tiny diffusers StableDiffusion3Pipeline folder without T5 (no TorchSharp here): every weight the exporter's graph
/// builders name, drawn by <see cref="RandomWeights"/>. Transformer 2 layers of 2 heads of 4, 16 latent channels, joint
/// width 16 (CLIP-L 6 + CLIP-G 8, padded); a VAE of two blocks (scale factor 2); the CLIP tokenizer of the tiny-sd1
/// fixture for both CLIP encoders, so their vocabulary is its 49408 ids and their positions 77.
/// </summary>
internal static class TinySd3Folder
{
    private const string Transformer = """
    {"_class_name": "SD3Transformer2DModel", "attention_head_dim": 4, "caption_projection_dim": 8, "in_channels": 16,
     "joint_attention_dim": 16, "num_attention_heads": 2, "num_layers": 2, "out_channels": 16, "patch_size": 2,
     "pooled_projection_dim": 6, "pos_embed_max_size": 8, "sample_size": 8}
    """;

    private const string Vae = """
    {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [4, 8],
     "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
     "in_channels": 3, "out_channels": 3, "latent_channels": 16, "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 16,
     "scaling_factor": 1.5305, "shift_factor": 0.0609, "use_quant_conv": false, "use_post_quant_conv": false}
    """;

    /// <summary>A CLIPTextModelWithProjection config: <paramref name="hidden"/> wide, projection 3, 49408 ids, 77 positions.</summary>
    private static string Clip(int hidden) => $$"""
    {"architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": {{hidden}},
     "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "gelu",
     "layer_norm_eps": 1e-05, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407, "projection_dim": 3}
    """;

    public static string Write(string folder, ulong seed)
    {
        Component(folder, "transformer", "diffusion_pytorch_model", Transformer, SD3TransformerGraph.Build(SD3TransformerConfig.Parse(Transformer), false).Weights, seed);
        var vae = VaeConfig.Parse(Vae);
        Component(folder, "vae", "diffusion_pytorch_model", Vae,
            VaeGraphs.BuildEncoder(vae, false).Weights.Concat(VaeGraphs.BuildDecoder(vae, false).Weights).DistinctBy(w => w.Name, StringComparer.Ordinal), seed + 1);
        foreach (var (name, hidden) in new[] { ("text_encoder", 6), ("text_encoder_2", 8) })
        {
            string json = Clip(hidden);
            Component(folder, name, "model", json, TextEncoderGraph.BuildWithProjection(ClipTextConfig.Parse(json), name, false).Weights, seed + (ulong)hidden);
        }

        foreach (string name in new[] { "tokenizer", "tokenizer_2" })
        {
            Directory.CreateDirectory(Path.Combine(folder, name));
            foreach (string file in Directory.EnumerateFiles(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "tokenizer")))
            {
                File.Copy(file, Path.Combine(folder, name, Path.GetFileName(file)));
            }
        }

        Directory.CreateDirectory(Path.Combine(folder, "scheduler"));
        File.WriteAllText(Path.Combine(folder, "scheduler", "scheduler_config.json"), """{"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}""");
        File.WriteAllText(Path.Combine(folder, "model_index.json"), """
        {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.29.2",
         "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
         "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "text_encoder_3": [null, null],
         "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"], "tokenizer_3": [null, null],
         "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}
        """);
        return folder;
    }

    private static void Component(string folder, string name, string weights, string config, IEnumerable<WeightRequirement> tensors, ulong seed)
    {
        Directory.CreateDirectory(Path.Combine(folder, name));
        File.WriteAllText(Path.Combine(folder, name, "config.json"), config);
        RandomWeights.Write(Path.Combine(folder, name, weights + ".safetensors"), tensors, seed);
    }
}

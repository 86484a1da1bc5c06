using System.Text.Json.Nodes;
using CTCal.Core.Diffusers;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>
/// A tiny SD3 pipeline with seeded random weights (TorchSharp SD3Transformer2DModel, two CLIPTextModelWithProjection, a
/// 16-channel AutoencoderKL without quant convs), saved as a diffusers StableDiffusion3Pipeline folder. The transformer
/// differs from the fixture's on purpose: 3 layers, 3 heads of 4, 6 input and 5 output channels, joint width 20, a
/// position table of 8 x 8 patches. With <c>withT5</c> the folder also has a tiny T5 v1.1 encoder (text_encoder_3) and a
/// tokenizer_3 folder holding only a tokenizer_config.json (the export copies it; nothing here tokenizes). Owns the models
/// and the folder.
/// <para>With <c>servable</c> the parts fit together as one pipeline the plugin can generate with: transformer in and out
/// channels = the VAE's 16 latent channels, CLIP encoders with the tokenizer's 49408 ids and 77 positions (CLIP-G pooling
/// at the tokenizer's end-of-text id), T5 d_model = joint_attention_dim 20, and tokenizer_3 with a tiny SentencePiece
/// model (<see cref="TinySentencePiece"/>).</para>
/// </summary>
public sealed class TinySD3Pipeline : IDisposable
{
    public const string TransformerJson = """
    {
      "_class_name": "SD3Transformer2DModel",
      "_diffusers_version": "0.29.2",
      "attention_head_dim": 4,
      "caption_projection_dim": 12,
      "in_channels": 6,
      "joint_attention_dim": 20,
      "num_attention_heads": 3,
      "num_layers": 3,
      "out_channels": 5,
      "patch_size": 2,
      "pooled_projection_dim": 10,
      "pos_embed_max_size": 8,
      "sample_size": 8
    }
    """;

    /// <summary>CLIP-L style: quick_gelu, legacy eos_token_id 2 (argmax pooling).</summary>
    public const string TextEncoderJson = """
    {
      "architectures": ["CLIPTextModelWithProjection"],
      "model_type": "clip_text_model",
      "vocab_size": 1000,
      "hidden_size": 8,
      "intermediate_size": 20,
      "num_hidden_layers": 3,
      "num_attention_heads": 2,
      "max_position_embeddings": 16,
      "hidden_act": "quick_gelu",
      "layer_norm_eps": 1e-05,
      "bos_token_id": 0,
      "eos_token_id": 2,
      "pad_token_id": 1,
      "projection_dim": 4
    }
    """;

    /// <summary>CLIP-G style: gelu, pooling at the first eos_token_id.</summary>
    public const string TextEncoder2Json = """
    {
      "architectures": ["CLIPTextModelWithProjection"],
      "model_type": "clip_text_model",
      "vocab_size": 1000,
      "hidden_size": 12,
      "intermediate_size": 24,
      "num_hidden_layers": 2,
      "num_attention_heads": 3,
      "max_position_embeddings": 16,
      "hidden_act": "gelu",
      "layer_norm_eps": 1e-05,
      "bos_token_id": 998,
      "eos_token_id": 999,
      "pad_token_id": 0,
      "projection_dim": 6
    }
    """;

    /// <summary>SD3-style VAE: 16 latent channels, no quant convs, shift_factor.</summary>
    public const string VaeJson = """
    {
      "_class_name": "AutoencoderKL",
      "act_fn": "silu",
      "block_out_channels": [8, 16],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
      "in_channels": 3,
      "out_channels": 3,
      "latent_channels": 16,
      "layers_per_block": 1,
      "norm_num_groups": 4,
      "sample_size": 16,
      "scaling_factor": 1.5305,
      "shift_factor": 0.0609,
      "use_quant_conv": false,
      "use_post_quant_conv": false
    }
    """;

    /// <summary>T5 v1.1 style (gated-gelu, RMS norms), 8 buckets over distances up to 12 (tests use longer sequences).</summary>
    public const string TextEncoder3Json = """
    {
      "architectures": ["T5EncoderModel"],
      "model_type": "t5",
      "vocab_size": 100,
      "d_model": 8,
      "d_kv": 4,
      "d_ff": 16,
      "num_layers": 2,
      "num_heads": 2,
      "relative_attention_num_buckets": 8,
      "relative_attention_max_distance": 12,
      "feed_forward_proj": "gated-gelu",
      "layer_norm_epsilon": 1e-06,
      "is_gated_act": true,
      "dense_act_fn": "gelu_new"
    }
    """;

    private readonly string _transformerJson;
    private readonly string _textEncoderJson;
    private readonly string _textEncoder2Json;
    private readonly string _textEncoder3Json;
    private readonly bool _servable;

    public TinySD3Pipeline(int seed, string root, bool withT5 = false, bool servable = false)
    {
        Root = root;
        Folder = Path.Combine(root, "model");
        _servable = servable;
        _transformerJson = servable ? With(TransformerJson, ("in_channels", 16), ("out_channels", 16)) : TransformerJson;
        _textEncoderJson = servable ? With(TextEncoderJson, ("vocab_size", 49408), ("max_position_embeddings", 77)) : TextEncoderJson;
        _textEncoder2Json = servable
            ? With(TextEncoder2Json, ("vocab_size", 49408), ("max_position_embeddings", 77), ("bos_token_id", 49406), ("eos_token_id", 49407))
            : TextEncoder2Json;
        _textEncoder3Json = servable ? With(TextEncoder3Json, ("d_model", 20)) : TextEncoder3Json;
        Transformer = new SD3Transformer2DModel(SD3TransformerConfig.Parse(_transformerJson));
        TextEncoder = new CLIPTextModelWithProjection(ClipTextConfig.Parse(_textEncoderJson, "text_encoder/config.json"));
        TextEncoder2 = new CLIPTextModelWithProjection(ClipTextConfig.Parse(_textEncoder2Json, "text_encoder_2/config.json"));
        Vae = new AutoencoderKL(VaeConfig.Parse(VaeJson));
        if (withT5)
        {
            TextEncoder3 = new T5EncoderModel(T5Config.Parse(_textEncoder3Json));
            RandomWeights.Fill(TextEncoder3, seed + 4);
            TextEncoder3.eval();
        }
        RandomWeights.Fill(Transformer, seed, gain: 1.0); // 3 adaLN-modulated blocks: gain 1.5 grows the outputs to |v| ~ 20
        RandomWeights.Fill(TextEncoder, seed + 1);
        RandomWeights.Fill(TextEncoder2, seed + 2);
        RandomWeights.Fill(Vae, seed + 3);
        Transformer.eval();
        TextEncoder.eval();
        TextEncoder2.eval();
        Vae.eval();
        WriteFolder();
    }

    public string Root { get; }

    /// <summary>The diffusers StableDiffusion3Pipeline folder.</summary>
    public string Folder { get; }

    public SD3Transformer2DModel Transformer { get; }
    public CLIPTextModelWithProjection TextEncoder { get; }
    public CLIPTextModelWithProjection TextEncoder2 { get; }
    public AutoencoderKL Vae { get; }

    /// <summary>The T5 encoder, or null for a folder without one.</summary>
    public T5EncoderModel? TextEncoder3 { get; }

    private void WriteFolder()
    {
        Write("transformer/config.json", _transformerJson);
        Write("text_encoder/config.json", _textEncoderJson);
        Write("text_encoder_2/config.json", _textEncoder2Json);
        Write("vae/config.json", VaeJson);
        DiffusersWeights.Save(Transformer, Path.Combine(Folder, "transformer", "diffusion_pytorch_model.safetensors"));
        DiffusersWeights.Save(TextEncoder, Path.Combine(Folder, "text_encoder", "model.safetensors"));
        DiffusersWeights.Save(TextEncoder2, Path.Combine(Folder, "text_encoder_2", "model.safetensors"));
        DiffusersWeights.Save(Vae, Path.Combine(Folder, "vae", "diffusion_pytorch_model.safetensors"));

        string tokenizer = Path.Combine(TestPaths.Fixtures, "tiny-sd1", "tokenizer");
        foreach (string name in new[] { "tokenizer", "tokenizer_2" })
        {
            Directory.CreateDirectory(Path.Combine(Folder, name));
            foreach (string file in Directory.EnumerateFiles(tokenizer))
                File.Copy(file, Path.Combine(Folder, name, Path.GetFileName(file)));
        }
        if (TextEncoder3 is not null)
        {
            Write("text_encoder_3/config.json", _textEncoder3Json);
            DiffusersWeights.Save(TextEncoder3, Path.Combine(Folder, "text_encoder_3", "model.safetensors"));
            Write("tokenizer_3/tokenizer_config.json", """{ "model_max_length": 256, "tokenizer_class": "T5Tokenizer" }""");
            if (_servable) TinySentencePiece.Write(Path.Combine(Folder, "tokenizer_3"));
        }
        Write("scheduler/scheduler_config.json", """{ "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.29.2", "num_train_timesteps": 1000, "shift": 3.0 }""");
        var index = new JsonObject
        {
            ["_class_name"] = "StableDiffusion3Pipeline",
            ["_diffusers_version"] = "0.29.2",
            ["scheduler"] = new JsonArray("diffusers", "FlowMatchEulerDiscreteScheduler"),
            ["text_encoder"] = new JsonArray("transformers", "CLIPTextModelWithProjection"),
            ["text_encoder_2"] = new JsonArray("transformers", "CLIPTextModelWithProjection"),
            ["text_encoder_3"] = TextEncoder3 is null ? new JsonArray(null, null) : new JsonArray("transformers", "T5EncoderModel"),
            ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
            ["tokenizer_2"] = new JsonArray("transformers", "CLIPTokenizer"),
            ["tokenizer_3"] = TextEncoder3 is null ? new JsonArray(null, null) : new JsonArray("transformers", "T5TokenizerFast"),
            ["transformer"] = new JsonArray("diffusers", "SD3Transformer2DModel"),
            ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
        };
        Write("model_index.json", index.ToJsonString());
    }

    /// <summary><paramref name="json"/> with the given top-level integer fields replaced.</summary>
    private static string With(string json, params (string Key, int Value)[] fields)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        foreach (var (key, value) in fields) node[key] = value;
        return node.ToJsonString();
    }

    private void Write(string relative, string text)
    {
        string path = Path.Combine(Folder, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    public void Dispose()
    {
        Transformer.Dispose();
        TextEncoder.Dispose();
        TextEncoder2.Dispose();
        Vae.Dispose();
        TextEncoder3?.Dispose();
        try { Directory.Delete(Root, true); } catch (IOException) { }
    }
}

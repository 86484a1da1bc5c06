namespace CTCal.Core.Diffusers;

/// <summary>
/// The three full-size Stable Diffusion configurations as published on the Hugging Face Hub, in one place, for test and
/// benchmark fixtures whose weights are generated on the fly (never committed):
/// <list type="bullet">
/// <item><see cref="Sd15"/>: runwayml/stable-diffusion-v1-5 (UNet 320/640/1280/1280, 2 layers per block, cross-attention
/// 768, 8 heads, 1x1-conv projections; CLIP ViT-L/14 text encoder, 768 wide, 12 layers, quick_gelu; VAE
/// 128/256/512/512, scaling 0.18215; PNDM, epsilon).</item>
/// <item><see cref="Sd21"/>: stabilityai/stable-diffusion-2-1 (768-v: cross-attention 1024, per-block heads 5/10/20/20,
/// linear projections, upcast attention, sample size 96; OpenCLIP ViT-H text encoder in the transformers layout, 1024
/// wide, 23 layers, gelu, padding with "!" = id 0; DDIM, v-prediction).</item>
/// <item><see cref="Sd21Base"/>: stabilityai/stable-diffusion-2-1-base (the same networks at 512, sample size 64, no
/// upcast; PNDM, epsilon).</item>
/// </list>
/// The texts are the published config files, with two deliberate differences, both no-ops for the networks:
/// <c>model_index.json</c> lists <c>safety_checker</c> and <c>feature_extractor</c> as <c>[null, null]</c> with
/// <c>requires_safety_checker: false</c> (no safety checker is generated), and SD 1.5's <c>vae/config.json</c> states
/// <c>scaling_factor: 0.18215</c>, diffusers' default that the published file leaves implicit.
/// How far they are checked: the texts were written from the published files without access to them (no model hub
/// here). The SD 2.x UNet fields (heads 5/10/20/20, cross-attention 1024, linear projections, sample size 96, block
/// types) and the SD 2.x VAE fields (128/256/512/512, sample size 768) agree with copies of stabilityai/stable-diffusion-2's
/// <c>unet/config.json</c> and <c>vae/config.json</c> quoted in public code; <c>upcast_attention</c> is 2.1's addition
/// to 2.0. The rest is unverified against the files. A wrong structural field would not go unnoticed on a real model:
/// the single-file checkpoint mapping (<see cref="CTCal.Core.Checkpoints.CheckpointKeyMap"/>) derives every tensor name
/// and shape from these configs, so reading a real checkpoint with them fails naming the missing or unknown key.
/// </summary>
public static class ReferenceModels
{
    private const string SdUpBlocks = """["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]""";
    private const string SdDownBlocks = """["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]""";

    /// <summary>Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5).</summary>
    public static ReferenceModel Sd15 { get; } = new(
        Kind: "sd15",
        Source: "runwayml/stable-diffusion-v1-5",
        UnetConfigJson: $$"""
        {
          "_class_name": "UNet2DConditionModel",
          "_diffusers_version": "0.6.0",
          "act_fn": "silu",
          "attention_head_dim": 8,
          "block_out_channels": [320, 640, 1280, 1280],
          "center_input_sample": false,
          "cross_attention_dim": 768,
          "down_block_types": {{SdDownBlocks}},
          "downsample_padding": 1,
          "flip_sin_to_cos": true,
          "freq_shift": 0,
          "in_channels": 4,
          "layers_per_block": 2,
          "mid_block_scale_factor": 1,
          "norm_eps": 1e-05,
          "norm_num_groups": 32,
          "out_channels": 4,
          "sample_size": 64,
          "up_block_types": {{SdUpBlocks}}
        }
        """,
        VaeConfigJson: Vae("0.6.0", 512),
        TextEncoderConfigJson: """
        {
          "_name_or_path": "openai/clip-vit-large-patch14",
          "architectures": ["CLIPTextModel"],
          "attention_dropout": 0.0,
          "bos_token_id": 0,
          "dropout": 0.0,
          "eos_token_id": 2,
          "hidden_act": "quick_gelu",
          "hidden_size": 768,
          "initializer_factor": 1.0,
          "initializer_range": 0.02,
          "intermediate_size": 3072,
          "layer_norm_eps": 1e-05,
          "max_position_embeddings": 77,
          "model_type": "clip_text_model",
          "num_attention_heads": 12,
          "num_hidden_layers": 12,
          "pad_token_id": 1,
          "projection_dim": 768,
          "torch_dtype": "float32",
          "transformers_version": "4.22.0.dev0",
          "vocab_size": 49408
        }
        """,
        SchedulerConfigJson: """
        {
          "_class_name": "PNDMScheduler",
          "_diffusers_version": "0.6.0",
          "beta_end": 0.012,
          "beta_schedule": "scaled_linear",
          "beta_start": 0.00085,
          "num_train_timesteps": 1000,
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "trained_betas": null,
          "clip_sample": false
        }
        """,
        ModelIndexJson: ModelIndexText("0.6.0", "PNDMScheduler"),
        SpecialTokensMapJson: SpecialTokens("<|endoftext|>"),
        TokenizerConfigJson: TokenizerConfig("<|endoftext|>"));

    /// <summary>Stable Diffusion 2.1 at 768 with v-prediction (stabilityai/stable-diffusion-2-1).</summary>
    public static ReferenceModel Sd21 { get; } = Sd2("sd21", "stabilityai/stable-diffusion-2-1", sampleSize: 96, upcast: true, vaeSampleSize: 768,
        scheduler: """
        {
          "_class_name": "DDIMScheduler",
          "_diffusers_version": "0.8.0",
          "beta_end": 0.012,
          "beta_schedule": "scaled_linear",
          "beta_start": 0.00085,
          "clip_sample": false,
          "num_train_timesteps": 1000,
          "prediction_type": "v_prediction",
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "trained_betas": null
        }
        """, schedulerClass: "DDIMScheduler");

    /// <summary>Stable Diffusion 2.1 base at 512 with epsilon prediction (stabilityai/stable-diffusion-2-1-base).</summary>
    public static ReferenceModel Sd21Base { get; } = Sd2("sd21-base", "stabilityai/stable-diffusion-2-1-base", sampleSize: 64, upcast: false, vaeSampleSize: 768,
        scheduler: """
        {
          "_class_name": "PNDMScheduler",
          "_diffusers_version": "0.10.0.dev0",
          "beta_end": 0.012,
          "beta_schedule": "scaled_linear",
          "beta_start": 0.00085,
          "clip_sample": false,
          "num_train_timesteps": 1000,
          "prediction_type": "epsilon",
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "trained_betas": null
        }
        """, schedulerClass: "PNDMScheduler");

    /// <summary>Kind name of <see cref="Sd3MediumTransformerConfigJson"/> (<c>make-model</c>, the benchmarks).</summary>
    public const string Sd3MediumTransformerKind = "sd3-medium";

    /// <summary>
    /// <c>transformer/config.json</c> of stabilityai/stable-diffusion-3-medium-diffusers (diffusers 0.29): 24 joint blocks,
    /// 24 heads of 64 (1536 wide), joint_attention_dim 4096, pooled 2048, patch 2, 16 latent channels, position table
    /// 192 x 192 patches; 2.03 B parameters (8.1 GB fp32). Only the transformer: the SD3 text encoders and VAE are not
    /// generated. Written from the published file without access to it, like the configs above; the config tests parse it.
    /// </summary>
    public const string Sd3MediumTransformerConfigJson = """
        {
          "_class_name": "SD3Transformer2DModel",
          "_diffusers_version": "0.29.0.dev0",
          "attention_head_dim": 64,
          "caption_projection_dim": 1536,
          "in_channels": 16,
          "joint_attention_dim": 4096,
          "num_attention_heads": 24,
          "num_layers": 24,
          "out_channels": 16,
          "patch_size": 2,
          "pooled_projection_dim": 2048,
          "pos_embed_max_size": 192,
          "sample_size": 128
        }
        """;

    /// <summary>All three, in the order sd15, sd21, sd21-base.</summary>
    public static IReadOnlyList<ReferenceModel> All { get; } = [Sd15, Sd21, Sd21Base];

    /// <summary>The configuration named <paramref name="kind"/> (sd15, sd21, sd21-base; case-insensitive).</summary>
    /// <exception cref="ArgumentException">an unknown kind, naming the known ones.</exception>
    public static ReferenceModel Get(string kind) =>
        All.FirstOrDefault(m => string.Equals(m.Kind, kind, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown model kind '{kind}' (known: {string.Join(", ", All.Select(m => m.Kind))})", nameof(kind));

    private static ReferenceModel Sd2(string kind, string source, int sampleSize, bool upcast, int vaeSampleSize, string scheduler, string schedulerClass) => new(
        Kind: kind,
        Source: source,
        UnetConfigJson: $$"""
        {
          "_class_name": "UNet2DConditionModel",
          "_diffusers_version": "0.10.0.dev0",
          "act_fn": "silu",
          "attention_head_dim": [5, 10, 20, 20],
          "block_out_channels": [320, 640, 1280, 1280],
          "center_input_sample": false,
          "cross_attention_dim": 1024,
          "down_block_types": {{SdDownBlocks}},
          "downsample_padding": 1,
          "dual_cross_attention": false,
          "flip_sin_to_cos": true,
          "freq_shift": 0,
          "in_channels": 4,
          "layers_per_block": 2,
          "mid_block_scale_factor": 1,
          "norm_eps": 1e-05,
          "norm_num_groups": 32,
          "num_class_embeds": null,
          "only_cross_attention": false,
          "out_channels": 4,
          "sample_size": {{sampleSize}},
          "up_block_types": {{SdUpBlocks}},
          "upcast_attention": {{(upcast ? "true" : "false")}},
          "use_linear_projection": true
        }
        """,
        VaeConfigJson: Vae("0.10.0.dev0", vaeSampleSize),
        TextEncoderConfigJson: """
        {
          "_name_or_path": "hf-models/stable-diffusion-v2-768x768/text_encoder",
          "architectures": ["CLIPTextModel"],
          "attention_dropout": 0.0,
          "bos_token_id": 0,
          "dropout": 0.0,
          "eos_token_id": 2,
          "hidden_act": "gelu",
          "hidden_size": 1024,
          "initializer_factor": 1.0,
          "initializer_range": 0.02,
          "intermediate_size": 4096,
          "layer_norm_eps": 1e-05,
          "max_position_embeddings": 77,
          "model_type": "clip_text_model",
          "num_attention_heads": 16,
          "num_hidden_layers": 23,
          "pad_token_id": 1,
          "projection_dim": 512,
          "torch_dtype": "float32",
          "transformers_version": "4.25.0.dev0",
          "vocab_size": 49408
        }
        """,
        SchedulerConfigJson: scheduler,
        ModelIndexJson: ModelIndexText("0.10.0.dev0", schedulerClass),
        SpecialTokensMapJson: SpecialTokens("!"),
        TokenizerConfigJson: TokenizerConfig("!"));

    private static string Vae(string version, int sampleSize) => $$"""
        {
          "_class_name": "AutoencoderKL",
          "_diffusers_version": "{{version}}",
          "act_fn": "silu",
          "block_out_channels": [128, 256, 512, 512],
          "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
          "in_channels": 3,
          "latent_channels": 4,
          "layers_per_block": 2,
          "norm_num_groups": 32,
          "out_channels": 3,
          "sample_size": {{sampleSize}},
          "scaling_factor": 0.18215,
          "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
        }
        """;

    private static string ModelIndexText(string version, string scheduler) => $$"""
        {
          "_class_name": "StableDiffusionPipeline",
          "_diffusers_version": "{{version}}",
          "feature_extractor": [null, null],
          "requires_safety_checker": false,
          "safety_checker": [null, null],
          "scheduler": ["diffusers", "{{scheduler}}"],
          "text_encoder": ["transformers", "CLIPTextModel"],
          "tokenizer": ["transformers", "CLIPTokenizer"],
          "unet": ["diffusers", "UNet2DConditionModel"],
          "vae": ["diffusers", "AutoencoderKL"]
        }
        """;

    private static string SpecialTokens(string pad) => $$"""
        {
          "bos_token": {"content": "<|startoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
          "eos_token": {"content": "<|endoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
          "pad_token": "{{pad}}",
          "unk_token": {"content": "<|endoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}
        }
        """;

    private static string TokenizerConfig(string pad) => $$"""
        {
          "add_prefix_space": false,
          "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
          "do_lower_case": true,
          "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
          "errors": "replace",
          "model_max_length": 77,
          "pad_token": "{{pad}}",
          "tokenizer_class": "CLIPTokenizer",
          "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}
        }
        """;
}

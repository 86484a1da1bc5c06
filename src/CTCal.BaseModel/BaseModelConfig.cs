using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using CTCal.Core.Diffusers;
using CTCal.Core.Schedulers;

namespace CTCal.BaseModel;

/// <summary>
/// Sizes of the from-scratch base model for the synthetic world, and the diffusers config files they give. Defaults: a
/// CLIP text encoder (hidden 64, 3 layers, 4 heads, 77 positions because the CLIP tokenizer always pads to 77), an
/// AutoencoderKL 64x64 RGB -> 4x16x16 (three levels, 16/32/32 channels), a UNet2DConditionModel on the 16x16 latents
/// (32/64 channels, about 1.1M parameters, cross-attention in every block, cross_attention_dim = text hidden), and a v-prediction DDPM schedule
/// (scaled_linear betas as SD). v-prediction because its target stays informative at high noise, where a tiny model
/// otherwise learns colours and layout last; training adds Min-SNR weighting on top. The SD3 family
/// (<see cref="BaseFamily.SD3"/>) uses the same text encoder sizes twice (with projection), an SD3Transformer2DModel on the
/// same latents (<see cref="TransformerLayers"/> blocks of <see cref="TransformerHeads"/> x <see cref="TransformerHeadDim"/>,
/// patch <see cref="PatchSize"/>) and a flow-matching scheduler with <see cref="FlowShift"/>.
/// </summary>
public sealed record BaseModelConfig
{
    public int ImageSize { get; init; } = 64;
    public int TextHidden { get; init; } = 64;
    public int TextLayers { get; init; } = 3;
    public int TextHeads { get; init; } = 4;
    public int[] VaeChannels { get; init; } = [16, 32, 32];
    public int VaeLayersPerBlock { get; init; } = 1;
    public int VaeGroups { get; init; } = 8;
    public int LatentChannels { get; init; } = 4;
    public double ScalingFactor { get; init; } = 1.0;
    [JsonPropertyName("unet_channels")]
    public int[] UNetChannels { get; init; } = [32, 64];
    [JsonPropertyName("unet_layers_per_block")]
    public int UNetLayersPerBlock { get; init; } = 1;
    [JsonPropertyName("unet_heads")]
    public int UNetHeads { get; init; } = 4;
    [JsonPropertyName("unet_groups")]
    public int UNetGroups { get; init; } = 16;
    public string PredictionType { get; init; } = "v_prediction";
    /// <summary>SD3 family: joint transformer blocks of the SD3Transformer2DModel.</summary>
    public int TransformerLayers { get; init; } = 4;
    /// <summary>SD3 family: attention heads (inner width = heads x head dim).</summary>
    public int TransformerHeads { get; init; } = 2;
    public int TransformerHeadDim { get; init; } = 32;
    public int PatchSize { get; init; } = 2;
    /// <summary>
    /// SD3 family: the FlowMatchEulerDiscreteScheduler's static shift. 1.0 (no shift) because SD3's 3.0 belongs to 1024 px
    /// (128x128 latents): the SD3 paper scales the shift with sqrt(tokens / 1024 tokens at 256 px), which is below 1 at 64 tokens.
    /// </summary>
    public double FlowShift { get; init; } = 1.0;

    /// <summary>A few-KB model for tests (32 px images, 8x8 latents).</summary>
    [JsonIgnore]
    public static BaseModelConfig Tiny { get; } = new()
    {
        ImageSize = 32, TextHidden = 32, TextLayers = 1, TextHeads = 2, VaeChannels = [16, 16], VaeGroups = 8,
        UNetChannels = [32, 32], UNetHeads = 2, UNetGroups = 8, TransformerLayers = 2, TransformerHeads = 2, TransformerHeadDim = 8,
    };

    [JsonIgnore]
    public int VaeScaleFactor => 1 << (VaeChannels.Length - 1);
    [JsonIgnore]
    public int LatentSize => ImageSize / VaeScaleFactor;

    public string TextEncoderJson(WorldTokenizer tokenizer) => Serialize(new JsonObject
    {
        ["_class_name"] = "CLIPTextModel", ["architectures"] = new JsonArray("CLIPTextModel"), ["model_type"] = "clip_text_model",
        ["vocab_size"] = tokenizer.VocabularySize, ["hidden_size"] = TextHidden, ["intermediate_size"] = 4 * TextHidden,
        ["num_hidden_layers"] = TextLayers, ["num_attention_heads"] = TextHeads, ["max_position_embeddings"] = 77,
        ["hidden_act"] = "quick_gelu", ["layer_norm_eps"] = 1e-5, ["projection_dim"] = TextHidden,
        ["bos_token_id"] = tokenizer.BosId, ["eos_token_id"] = tokenizer.EosId, ["pad_token_id"] = tokenizer.EosId,
        ["torch_dtype"] = "float32",
    });

    /// <summary>SD3 family: text_encoder and text_encoder_2 (the same sizes; hidden states and pooled projections both <see cref="TextHidden"/> wide).</summary>
    public string TextEncoderWithProjectionJson(WorldTokenizer tokenizer)
    {
        var node = JsonNode.Parse(TextEncoderJson(tokenizer))!.AsObject();
        node["_class_name"] = "CLIPTextModelWithProjection";
        node["architectures"] = new JsonArray("CLIPTextModelWithProjection");
        return Serialize(node);
    }

    /// <summary>
    /// SD3 family: the SD3Transformer2DModel on the latents (joint_attention_dim = the two encoders' widths side by side,
    /// pooled_projection_dim = their two projections, caption_projection_dim = the inner width).
    /// </summary>
    public string TransformerJson() => Serialize(new JsonObject
    {
        ["_class_name"] = "SD3Transformer2DModel", ["_diffusers_version"] = "0.29.2", ["sample_size"] = LatentSize, ["patch_size"] = PatchSize,
        ["in_channels"] = LatentChannels, ["out_channels"] = LatentChannels, ["num_layers"] = TransformerLayers,
        ["attention_head_dim"] = TransformerHeadDim, ["num_attention_heads"] = TransformerHeads, ["joint_attention_dim"] = 2 * TextHidden,
        ["caption_projection_dim"] = TransformerHeads * TransformerHeadDim, ["pooled_projection_dim"] = 2 * TextHidden,
        ["pos_embed_max_size"] = LatentSize / PatchSize,
    });

    /// <summary>SD3 family: FlowMatchEulerDiscreteScheduler, 1000 steps, <see cref="FlowShift"/>.</summary>
    public string FlowSchedulerJson() => Serialize(new JsonObject
    {
        ["_class_name"] = "FlowMatchEulerDiscreteScheduler", ["_diffusers_version"] = "0.29.2", ["num_train_timesteps"] = 1000, ["shift"] = FlowShift,
    });

    /// <summary>SD3 family: StableDiffusion3Pipeline without T5 (text_encoder_3 / tokenizer_3 null: the pipeline uses zeros).</summary>
    public static string SD3ModelIndexJson() => Serialize(new JsonObject
    {
        ["_class_name"] = "StableDiffusion3Pipeline", ["_diffusers_version"] = "0.29.2",
        ["scheduler"] = new JsonArray("diffusers", "FlowMatchEulerDiscreteScheduler"),
        ["text_encoder"] = new JsonArray("transformers", "CLIPTextModelWithProjection"), ["text_encoder_2"] = new JsonArray("transformers", "CLIPTextModelWithProjection"),
        ["text_encoder_3"] = new JsonArray(null, null), ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["tokenizer_2"] = new JsonArray("transformers", "CLIPTokenizer"), ["tokenizer_3"] = new JsonArray(null, null),
        ["transformer"] = new JsonArray("diffusers", "SD3Transformer2DModel"), ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
    });

    public string VaeJson() => Serialize(new JsonObject
    {
        ["_class_name"] = "AutoencoderKL", ["act_fn"] = "silu", ["in_channels"] = 3, ["out_channels"] = 3,
        ["block_out_channels"] = Ints(VaeChannels),
        ["down_block_types"] = Repeat("DownEncoderBlock2D", VaeChannels.Length), ["up_block_types"] = Repeat("UpDecoderBlock2D", VaeChannels.Length),
        ["latent_channels"] = LatentChannels, ["layers_per_block"] = VaeLayersPerBlock, ["norm_num_groups"] = VaeGroups,
        ["sample_size"] = ImageSize, ["scaling_factor"] = ScalingFactor, ["force_upcast"] = true,
    });

    /// <summary>The VAE config with <paramref name="scalingFactor"/> (1 / std of the latent means, measured after VAE training).</summary>
    public string VaeJson(double scalingFactor) => (this with { ScalingFactor = scalingFactor }).VaeJson();

    public string UNetJson()
    {
        int n = UNetChannels.Length;
        return Serialize(new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel", ["sample_size"] = LatentSize, ["in_channels"] = LatentChannels, ["out_channels"] = LatentChannels,
            ["block_out_channels"] = Ints(UNetChannels), ["down_block_types"] = Repeat("CrossAttnDownBlock2D", n),
            ["up_block_types"] = Repeat("CrossAttnUpBlock2D", n), ["mid_block_type"] = "UNetMidBlock2DCrossAttn",
            ["layers_per_block"] = UNetLayersPerBlock, ["cross_attention_dim"] = TextHidden, ["attention_head_dim"] = UNetHeads,
            ["norm_num_groups"] = UNetGroups, ["flip_sin_to_cos"] = true, ["freq_shift"] = 0, ["act_fn"] = "silu",
        });
    }

    public string SchedulerJson() => Serialize(new JsonObject
    {
        ["_class_name"] = "DDIMScheduler", ["num_train_timesteps"] = 1000, ["beta_start"] = 0.00085, ["beta_end"] = 0.012,
        ["beta_schedule"] = "scaled_linear", ["prediction_type"] = PredictionType, ["clip_sample"] = false,
        ["set_alpha_to_one"] = false, ["steps_offset"] = 1, ["timestep_spacing"] = "leading",
    });

    public static string ModelIndexJson() => Serialize(new JsonObject
    {
        ["_class_name"] = "StableDiffusionPipeline", ["_diffusers_version"] = "0.27.2",
        ["feature_extractor"] = new JsonArray(null, null), ["safety_checker"] = new JsonArray(null, null), ["requires_safety_checker"] = false,
        ["scheduler"] = new JsonArray("diffusers", "DDIMScheduler"), ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"), ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
        ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
    });

    /// <summary>Parses every config with CTCal.Core's records (throws on any inconsistency, e.g. heads not dividing channels).</summary>
    public void Check(WorldTokenizer tokenizer, BaseFamily family = BaseFamily.SD1)
    {
        ClipTextConfig.Parse(TextEncoderJson(tokenizer));
        VaeConfig.Parse(VaeJson());
        if (family == BaseFamily.SD3)
        {
            ClipTextConfig.Parse(TextEncoderWithProjectionJson(tokenizer));
            SD3TransformerConfig.Parse(TransformerJson());
            SchedulerConfig.Parse(FlowSchedulerJson());
            if (LatentSize % PatchSize != 0) throw new ArgumentException($"latent size {LatentSize} is not a multiple of patch_size {PatchSize}");
        }
        else
        {
            UNetConfig.Parse(UNetJson());
            SchedulerConfig.Parse(SchedulerJson());
        }
        if (ImageSize % VaeScaleFactor != 0) throw new ArgumentException($"image size {ImageSize} is not a multiple of the VAE factor {VaeScaleFactor}");
    }

    /// <summary>Options a JSON object may set (keys: the property names in snake_case, e.g. <c>unet_channels</c>).</summary>
    public static BaseModelConfig FromJson(string json, string file)
    {
        var options = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow };
        try
        {
            return JsonSerializer.Deserialize<BaseModelConfig>(json, options) ?? throw new InvalidDataException($"{file}: expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{file}: {e.Message}", e);
        }
    }

    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true });

    private static JsonArray Ints(int[] values) => new(values.Select(v => (JsonNode?)v).ToArray());
    private static JsonArray Repeat(string value, int n) => new(Enumerable.Repeat(value, n).Select(v => (JsonNode?)v).ToArray());
    private static string Serialize(JsonObject o) => o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}

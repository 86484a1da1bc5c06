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
/// otherwise learns colours and layout last; training adds Min-SNR weighting on top.
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

    /// <summary>A few-KB model for tests (32 px images, 8x8 latents).</summary>
    [JsonIgnore]
    public static BaseModelConfig Tiny { get; } = new()
    {
        ImageSize = 32, TextHidden = 32, TextLayers = 1, TextHeads = 2, VaeChannels = [16, 16], VaeGroups = 8,
        UNetChannels = [32, 32], UNetHeads = 2, UNetGroups = 8,
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
    public void Check(WorldTokenizer tokenizer)
    {
        ClipTextConfig.Parse(TextEncoderJson(tokenizer));
        VaeConfig.Parse(VaeJson());
        UNetConfig.Parse(UNetJson());
        SchedulerConfig.Parse(SchedulerJson());
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

using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CTCal.Core.Models;

namespace CTCal.Core.Checkpoints;

/// <summary>
/// Derives the diffusers configs of an original single-file checkpoint from its tensor shapes (channels, layers, which
/// blocks have attention, cross-attention width, linear or conv projections, text width and depth) and fills what
/// weights cannot show with the published SD 1.5 / SD 2.1 values (head counts, norm groups, scheduler). Each value that
/// was assumed rather than read is described in <see cref="Notes"/>.
/// </summary>
internal sealed class SingleFileConfigs
{
    private readonly string _file;
    private readonly IReadOnlyDictionary<string, long[]> _shapes;
    private readonly List<string> _notes = [];

    private SingleFileConfigs(string file, IReadOnlyDictionary<string, long[]> shapes)
    {
        _file = file;
        _shapes = shapes;
    }

    public IReadOnlyList<string> Notes => _notes;

    public static SingleFileConfigs For(string file, IReadOnlyDictionary<string, long[]> shapes) => new(file, shapes);

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private long[] Shape(string key) => _shapes.TryGetValue(key, out var s)
        ? s
        : throw new ModelFolderException(_file, [$"missing tensor '{key}', needed to derive the model's configuration"]);

    private int Dim(string key, int axis)
    {
        long[] s = Shape(key);
        if (axis >= s.Length) throw new ModelFolderException(_file, [$"tensor '{key}' has shape [{string.Join(", ", s)}], expected at least {axis + 1} dimensions"]);
        return checked((int)s[axis]);
    }

    /// <summary>The distinct indices N of keys <c>{prefix}N.*</c>, sorted.</summary>
    private List<int> Indices(string prefix)
    {
        var re = new Regex("^" + Regex.Escape(prefix) + @"(\d+)\.", RegexOptions.CultureInvariant);
        var indices = new SortedSet<int>();
        foreach (string key in _shapes.Keys)
        {
            var m = re.Match(key);
            if (!m.Success) continue;
            if (!int.TryParse(m.Groups[1].Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int i) || i > 100_000)
                throw new ModelFolderException(_file, [$"key '{key}' has block index {m.Groups[1].Value}, which is not a plausible block number"]);
            indices.Add(i);
        }
        return indices.ToList();
    }

    /// <summary>unet/config.json for the checkpoint's UNet.</summary>
    public string UNet(string family, int sampleSize)
    {
        const string r = CheckpointKeyMap.UNetRoot;
        var inputs = Indices(r + "input_blocks.");
        if (inputs.Count == 0) throw new ModelFolderException(_file, [$"no UNet found (no '{r}input_blocks.*' keys)"]);
        int count = inputs[^1] + 1;
        int firstDown = inputs.FirstOrDefault(i => _shapes.ContainsKey($"{r}input_blocks.{i}.0.op.weight"));
        int layers = firstDown > 0 ? firstDown - 1 : count - 1;
        if (layers <= 0 || count % (layers + 1) != 0)
            throw new ModelFolderException(_file, [$"{count} UNet input blocks with a downsampler at {firstDown} do not form levels of equal depth"]);
        int levels = count / (layers + 1);
        var channels = new JsonArray();
        var down = new JsonArray();
        var up = new JsonArray();
        var depth = new JsonArray();
        var heads = new JsonArray();
        for (int i = 0; i < levels; i++)
        {
            string first = $"{r}input_blocks.{1 + i * (layers + 1)}";
            int c = Dim($"{first}.0.out_layers.3.weight", 0);
            channels.Add(c);
            bool attention = _shapes.ContainsKey($"{first}.1.proj_in.weight");
            down.Add(attention ? "CrossAttnDownBlock2D" : "DownBlock2D");
            depth.Add(attention ? Math.Max(1, Indices($"{first}.1.transformer_blocks.").Count) : 1);
            heads.Add(family == ModelFamily.Sd2 ? Math.Max(1, c / 64) : 8);
            bool upAttention = _shapes.ContainsKey($"{r}output_blocks.{i * (layers + 1)}.1.proj_in.weight");
            up.Add(upAttention ? "CrossAttnUpBlock2D" : "UpBlock2D");
        }
        string mid = r + "middle_block.1.";
        var config = new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["act_fn"] = "silu",
            ["attention_head_dim"] = heads,
            ["block_out_channels"] = channels,
            ["cross_attention_dim"] = Dim(mid + "transformer_blocks.0.attn2.to_k.weight", 1),
            ["down_block_types"] = down,
            ["up_block_types"] = up,
            ["flip_sin_to_cos"] = true,
            ["freq_shift"] = 0,
            ["in_channels"] = Dim(r + "input_blocks.0.0.weight", 1),
            ["out_channels"] = Dim(r + "out.2.weight", 0),
            ["layers_per_block"] = layers,
            ["mid_block_type"] = "UNetMidBlock2DCrossAttn",
            ["norm_num_groups"] = Groups("unet", channels),
            ["norm_eps"] = 1e-5,
            ["sample_size"] = sampleSize,
            ["transformer_layers_per_block"] = depth,
            ["use_linear_projection"] = Shape(mid + "proj_in.weight").Length == 2,
            ["upcast_attention"] = family == ModelFamily.Sd2,
        };
        _notes.Add(family == ModelFamily.Sd2
            ? "unet: heads assumed to be 64 channels wide and norm groups 32 (SD 2.x)"
            : "unet: 8 attention heads and norm groups 32 assumed (SD 1.x)");
        return config.ToJsonString(Indented);
    }

    // 32 groups (SD 1.x/2.x); a smaller model whose widths 32 does not divide gets the largest count that divides them all.
    private int Groups(string component, JsonArray channels)
    {
        int groups = 32;
        foreach (var c in channels) groups = Gcd(groups, c!.GetValue<int>());
        if (groups != 32) _notes.Add($"{component}: norm groups {groups} assumed (32 does not divide the widths)");
        return groups;
    }

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);

    /// <summary>vae/config.json for the checkpoint's VAE.</summary>
    public string Vae(int sampleSize)
    {
        const string r = CheckpointKeyMap.VaeRoot;
        var levels = Indices(r + "encoder.down.");
        if (levels.Count == 0) throw new ModelFolderException(_file, [$"no VAE found (no '{r}encoder.down.*' keys)"]);
        int layers = Indices(r + "encoder.down.0.block.").Count;
        var channels = new JsonArray();
        foreach (int i in levels) channels.Add(Dim($"{r}encoder.down.{i}.block.0.conv1.weight", 0));
        var config = new JsonObject
        {
            ["_class_name"] = "AutoencoderKL",
            ["act_fn"] = "silu",
            ["block_out_channels"] = channels,
            ["down_block_types"] = new JsonArray(levels.Select(_ => (JsonNode)"DownEncoderBlock2D").ToArray()),
            ["up_block_types"] = new JsonArray(levels.Select(_ => (JsonNode)"UpDecoderBlock2D").ToArray()),
            ["in_channels"] = Dim(r + "encoder.conv_in.weight", 1),
            ["out_channels"] = Dim(r + "decoder.conv_out.weight", 0),
            ["latent_channels"] = Dim(r + "post_quant_conv.weight", 0),
            ["layers_per_block"] = layers,
            ["norm_num_groups"] = Groups("vae", channels),
            ["sample_size"] = sampleSize,
            ["scaling_factor"] = 0.18215,
        };
        _notes.Add("vae: norm groups 32 and scaling factor 0.18215 assumed (SD 1.x/2.x)");
        return config.ToJsonString(Indented);
    }

    /// <summary>text_encoder/config.json for the checkpoint's CLIP (SD 1.x) or OpenCLIP (SD 2.x, penultimate layer) text model.</summary>
    public string TextEncoder(string family)
    {
        int vocab, hidden, positions, layers, intermediate;
        if (family == ModelFamily.Sd2)
        {
            const string o = "cond_stage_model.model.";
            vocab = Dim(o + "token_embedding.weight", 0);
            hidden = Dim(o + "token_embedding.weight", 1);
            positions = Dim(o + "positional_embedding", 0);
            int blocks = Indices(o + "transformer.resblocks.").Count;
            if (blocks < 2) throw new ModelFolderException(_file, [$"the OpenCLIP text model has {blocks} resblock(s); SD 2.x uses the penultimate one, so at least 2 are needed"]);
            layers = blocks - 1;
            intermediate = Dim(o + "transformer.resblocks.0.mlp.c_fc.weight", 0);
            _notes.Add($"text_encoder: OpenCLIP's last resblock ({blocks - 1}) dropped (SD 2.x uses the penultimate layer)");
        }
        else
        {
            string p = _shapes.Keys.Any(k => k.StartsWith("cond_stage_model.transformer.text_model.", StringComparison.Ordinal))
                ? "cond_stage_model.transformer.text_model." : "cond_stage_model.transformer.";
            vocab = Dim(p + "embeddings.token_embedding.weight", 0);
            hidden = Dim(p + "embeddings.token_embedding.weight", 1);
            positions = Dim(p + "embeddings.position_embedding.weight", 0);
            layers = Indices(p + "encoder.layers.").Count;
            intermediate = Dim(p + "encoder.layers.0.mlp.fc1.weight", 0);
        }
        int heads = hidden % 64 == 0 ? hidden / 64 : 1;
        _notes.Add($"text_encoder: {heads} head(s) of width {hidden / heads} assumed (CLIP/OpenCLIP use 64)");
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("CLIPTextModel"),
            ["model_type"] = "clip_text_model",
            ["vocab_size"] = vocab,
            ["hidden_size"] = hidden,
            ["intermediate_size"] = intermediate,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["max_position_embeddings"] = positions,
            ["hidden_act"] = family == ModelFamily.Sd2 ? "gelu" : "quick_gelu",
            ["layer_norm_eps"] = 1e-5,
            ["bos_token_id"] = 0,
            ["eos_token_id"] = 2,
            ["pad_token_id"] = 1,
            ["projection_dim"] = hidden,
        };
        return config.ToJsonString(Indented);
    }

    /// <summary>scheduler/scheduler_config.json: SD 1.5's PNDM or SD 2.1's DDIM settings with <paramref name="prediction"/>.</summary>
    public static string Scheduler(string family, string prediction)
    {
        var config = new JsonObject
        {
            ["_class_name"] = family == ModelFamily.Sd2 ? "DDIMScheduler" : "PNDMScheduler",
            ["beta_end"] = 0.012,
            ["beta_schedule"] = "scaled_linear",
            ["beta_start"] = 0.00085,
            ["clip_sample"] = false,
            ["num_train_timesteps"] = 1000,
            ["prediction_type"] = prediction,
            ["set_alpha_to_one"] = false,
            ["skip_prk_steps"] = true,
            ["steps_offset"] = 1,
            ["timestep_spacing"] = "leading",
        };
        return config.ToJsonString(Indented);
    }
}

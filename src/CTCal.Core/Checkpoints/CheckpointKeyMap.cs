using CTCal.Core.Diffusers;
using CTCal.Core.Models;

namespace CTCal.Core.Checkpoints;

/// <summary>A diffusers tensor that an original checkpoint key gives: component, name, shape and first element inside the stored tensor.</summary>
public sealed record MappedTensor(string Component, string Name, long[] Shape, long ElementOffset);

/// <summary>
/// The one table between an original single-file Stable Diffusion checkpoint (LDM/CompVis: <c>model.diffusion_model.*</c>,
/// <c>first_stage_model.*</c>, <c>cond_stage_model.transformer.*</c> for SD 1.x, OpenCLIP <c>cond_stage_model.model.*</c>
/// for SD 2.x) and the diffusers names of the UNet, VAE and text encoder. The rows (<see cref="Rules"/>) are derived from
/// the diffusers configs (blocks, layers per block, which blocks have attention, text layers) and read both ways:
/// <see cref="ToDiffusers"/> for reading a checkpoint, <see cref="ToOriginal"/> for writing one.
/// </summary>
public sealed class CheckpointKeyMap
{
    /// <summary>The UNet's root in an original checkpoint.</summary>
    public const string UNetRoot = "model.diffusion_model.";

    /// <summary>The VAE's root.</summary>
    public const string VaeRoot = "first_stage_model.";

    /// <summary>The text encoder's root (CLIP: <c>cond_stage_model.transformer.</c>, OpenCLIP: <c>cond_stage_model.model.</c>).</summary>
    public const string TextRoot = "cond_stage_model.";

    /// <summary>The EMA copy of the UNet (LitEma names: the UNet key after <c>model.</c> with the dots removed).</summary>
    public const string EmaRoot = "model_ema.";

    /// <summary>Component names (the diffusers folder names).</summary>
    public const string UNet = "unet", Vae = "vae", TextEncoder = "text_encoder";

    private const string OpenClip = "cond_stage_model.model.";
    private readonly Dictionary<string, List<KeyRule>> _byOriginal = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), KeyRule> _byDiffusers = new();
    private readonly List<KeyRule> _rules = [];
    private readonly int _textLayers;

    private CheckpointKeyMap(string family, int textLayers)
    {
        Family = family;
        _textLayers = textLayers;
    }

    /// <summary><see cref="ModelFamily.Sd1"/> (CLIP text keys) or <see cref="ModelFamily.Sd2"/> (OpenCLIP text keys).</summary>
    public string Family { get; }

    /// <summary>Every row, in the order they were derived.</summary>
    public IReadOnlyList<KeyRule> Rules => _rules;

    /// <summary>The table for models with these configs; <paramref name="family"/> picks the text encoder's original layout.</summary>
    /// <exception cref="ArgumentException">an unknown family.</exception>
    public static CheckpointKeyMap Build(string family, UNetConfig unet, VaeConfig vae, ClipTextConfig text)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(vae);
        ArgumentNullException.ThrowIfNull(text);
        if (family is not (ModelFamily.Sd1 or ModelFamily.Sd2)) throw new ArgumentException($"unknown family '{family}'", nameof(family));
        var map = new CheckpointKeyMap(family, text.NumHiddenLayers);
        map.AddUNet(unet);
        map.AddVae(vae);
        if (family == ModelFamily.Sd1) map.AddClip();
        else map.AddOpenClip(text.NumHiddenLayers);
        return map;
    }

    private void Add(string component, string diffusers, string original, KeyTransform transform = KeyTransform.Rename, int part = 0)
    {
        var rule = new KeyRule(component, diffusers, original, transform, part);
        _rules.Add(rule);
        if (!_byOriginal.TryGetValue(original, out var list)) _byOriginal[original] = list = [];
        list.Add(rule);
        _byDiffusers.TryAdd((component, diffusers), rule); // the first row is the canonical spelling when two originals share a name
    }

    // LDM ResBlock -> diffusers ResnetBlock2D.
    private static readonly (string Original, string Diffusers)[] UNetResnet =
    [
        ("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
        ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut"),
    ];

    private void UNetResnetRows(string diffusers, string original)
    {
        foreach (var (o, d) in UNetResnet) Add(UNet, $"{diffusers}.{d}", $"{UNetRoot}{original}.{o}");
    }

    private void AddUNet(UNetConfig c)
    {
        int n = c.BlockOutChannels.Length, l = c.LayersPerBlock;
        Add(UNet, "time_embedding.linear_1", UNetRoot + "time_embed.0");
        Add(UNet, "time_embedding.linear_2", UNetRoot + "time_embed.2");
        Add(UNet, "conv_in", UNetRoot + "input_blocks.0.0");
        for (int i = 0; i < n; i++)
        {
            bool attention = c.DownBlockTypes[i].StartsWith("CrossAttn", StringComparison.Ordinal);
            for (int j = 0; j < l; j++)
            {
                int index = 1 + i * (l + 1) + j;
                UNetResnetRows($"down_blocks.{i}.resnets.{j}", $"input_blocks.{index}.0");
                if (attention) Add(UNet, $"down_blocks.{i}.attentions.{j}", $"{UNetRoot}input_blocks.{index}.1");
            }
            if (i < n - 1) Add(UNet, $"down_blocks.{i}.downsamplers.0.conv", $"{UNetRoot}input_blocks.{(i + 1) * (l + 1)}.0.op");
        }
        UNetResnetRows("mid_block.resnets.0", "middle_block.0");
        Add(UNet, "mid_block.attentions.0", UNetRoot + "middle_block.1");
        UNetResnetRows("mid_block.resnets.1", "middle_block.2");
        for (int i = 0; i < n; i++)
        {
            bool attention = c.UpBlockTypes[i].StartsWith("CrossAttn", StringComparison.Ordinal);
            for (int j = 0; j <= l; j++)
            {
                int index = i * (l + 1) + j;
                UNetResnetRows($"up_blocks.{i}.resnets.{j}", $"output_blocks.{index}.0");
                if (attention) Add(UNet, $"up_blocks.{i}.attentions.{j}", $"{UNetRoot}output_blocks.{index}.1");
                if (j == l && i < n - 1)
                    Add(UNet, $"up_blocks.{i}.upsamplers.0.conv", $"{UNetRoot}output_blocks.{index}.{(attention ? 2 : 1)}.conv");
            }
        }
        Add(UNet, "conv_norm_out", UNetRoot + "out.0");
        Add(UNet, "conv_out", UNetRoot + "out.2");
    }

    private void VaeResnetRows(string diffusers, string original)
    {
        foreach (string same in new[] { "norm1", "conv1", "norm2", "conv2" }) Add(Vae, $"{diffusers}.{same}", $"{VaeRoot}{original}.{same}");
        Add(Vae, $"{diffusers}.conv_shortcut", $"{VaeRoot}{original}.nin_shortcut");
    }

    private void VaeMidRows(string side)
    {
        VaeResnetRows($"{side}.mid_block.resnets.0", $"{side}.mid.block_1");
        VaeResnetRows($"{side}.mid_block.resnets.1", $"{side}.mid.block_2");
        string attn = $"{side}.mid_block.attentions.0", orig = $"{VaeRoot}{side}.mid.attn_1";
        Add(Vae, $"{attn}.group_norm", $"{orig}.norm");
        Add(Vae, $"{attn}.to_q", $"{orig}.q", KeyTransform.ConvToLinear);
        Add(Vae, $"{attn}.to_k", $"{orig}.k", KeyTransform.ConvToLinear);
        Add(Vae, $"{attn}.to_v", $"{orig}.v", KeyTransform.ConvToLinear);
        Add(Vae, $"{attn}.to_out.0", $"{orig}.proj_out", KeyTransform.ConvToLinear);
        Add(Vae, $"{side}.conv_in", $"{VaeRoot}{side}.conv_in");
        Add(Vae, $"{side}.conv_out", $"{VaeRoot}{side}.conv_out");
        Add(Vae, $"{side}.conv_norm_out", $"{VaeRoot}{side}.norm_out");
    }

    private void AddVae(VaeConfig c)
    {
        int n = c.BlockOutChannels.Length, l = c.LayersPerBlock;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < l; j++) VaeResnetRows($"encoder.down_blocks.{i}.resnets.{j}", $"encoder.down.{i}.block.{j}");
            if (i < n - 1) Add(Vae, $"encoder.down_blocks.{i}.downsamplers.0.conv", $"{VaeRoot}encoder.down.{i}.downsample.conv");
        }
        for (int i = 0; i < n; i++)
        {
            int original = n - 1 - i; // the LDM decoder counts its up levels from the lowest resolution
            for (int j = 0; j <= l; j++) VaeResnetRows($"decoder.up_blocks.{i}.resnets.{j}", $"decoder.up.{original}.block.{j}");
            if (i < n - 1) Add(Vae, $"decoder.up_blocks.{i}.upsamplers.0.conv", $"{VaeRoot}decoder.up.{original}.upsample.conv");
        }
        VaeMidRows("encoder");
        VaeMidRows("decoder");
        Add(Vae, "quant_conv", VaeRoot + "quant_conv");
        Add(Vae, "post_quant_conv", VaeRoot + "post_quant_conv");
    }

    private void AddClip()
    {
        Add(TextEncoder, "text_model", TextRoot + "transformer.text_model");
        Add(TextEncoder, "text_model", TextRoot + "transformer"); // checkpoints saved with transformers < 4.x lack "text_model."
    }

    private void AddOpenClip(int layers)
    {
        Add(TextEncoder, "text_model.embeddings.token_embedding", OpenClip + "token_embedding");
        Add(TextEncoder, "text_model.embeddings.position_embedding.weight", OpenClip + "positional_embedding");
        Add(TextEncoder, "text_model.final_layer_norm", OpenClip + "ln_final");
        for (int i = 0; i < layers; i++)
        {
            string d = $"text_model.encoder.layers.{i}", o = $"{OpenClip}transformer.resblocks.{i}";
            Add(TextEncoder, $"{d}.layer_norm1", $"{o}.ln_1");
            Add(TextEncoder, $"{d}.layer_norm2", $"{o}.ln_2");
            Add(TextEncoder, $"{d}.mlp.fc1", $"{o}.mlp.c_fc");
            Add(TextEncoder, $"{d}.mlp.fc2", $"{o}.mlp.c_proj");
            Add(TextEncoder, $"{d}.self_attn.out_proj", $"{o}.attn.out_proj");
            string[] qkv = ["q_proj", "k_proj", "v_proj"];
            for (int p = 0; p < KeyRule.FusedParts; p++)
            {
                Add(TextEncoder, $"{d}.self_attn.{qkv[p]}.weight", $"{o}.attn.in_proj_weight", KeyTransform.FusedPart, p);
                Add(TextEncoder, $"{d}.self_attn.{qkv[p]}.bias", $"{o}.attn.in_proj_bias", KeyTransform.FusedPart, p);
            }
        }
    }

    /// <summary>
    /// True for keys inside a component root that diffusers does not use: OpenCLIP's <c>text_projection</c> and
    /// <c>logit_scale</c>, its resblocks past the text layers (SD 2.x uses the penultimate layer, so the last block is
    /// dropped), and a VAE's training loss (<c>first_stage_model.loss.*</c>).
    /// </summary>
    public bool IsIgnored(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.StartsWith(VaeRoot + "loss.", StringComparison.Ordinal)) return true;
        if (Family != ModelFamily.Sd2 || !key.StartsWith(OpenClip, StringComparison.Ordinal)) return false;
        string rest = key[OpenClip.Length..];
        if (rest is "text_projection" or "logit_scale") return true;
        const string blocks = "transformer.resblocks.";
        if (!rest.StartsWith(blocks, StringComparison.Ordinal)) return false;
        string index = rest[blocks.Length..].Split('.')[0];
        return int.TryParse(index, out int i) && i >= _textLayers;
    }

    /// <summary>
    /// The diffusers tensors an original key gives (one, or three for a fused q/k/v), with their shapes; null when no row
    /// matches the key.
    /// </summary>
    /// <exception cref="FormatException">the stored shape does not fit the row (a fused tensor whose first axis is not a multiple of 3).</exception>
    public IReadOnlyList<MappedTensor>? ToDiffusers(string key, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(shape);
        for (string prefix = key; ; prefix = prefix[..prefix.LastIndexOf('.')])
        {
            if (_byOriginal.TryGetValue(prefix, out var rules)) return rules.Select(r => Apply(r, key, shape)).ToList();
            if (prefix.LastIndexOf('.') < 0) return null;
        }
    }

    private static MappedTensor Apply(KeyRule rule, string key, long[] shape)
    {
        string name = rule.DiffusersPrefix + key[rule.OriginalPrefix.Length..];
        switch (rule.Transform)
        {
            case KeyTransform.ConvToLinear when shape.Length == 4 && shape[2] == 1 && shape[3] == 1:
                return new MappedTensor(rule.Component, name, [shape[0], shape[1]], 0);
            case KeyTransform.FusedPart:
                if (shape.Length == 0 || shape[0] % KeyRule.FusedParts != 0)
                    throw new FormatException($"'{key}' has shape [{string.Join(", ", shape)}]; a fused q/k/v tensor needs a first axis divisible by {KeyRule.FusedParts}");
                long rows = shape[0] / KeyRule.FusedParts;
                long[] part = [rows, .. shape[1..]];
                long perRow = shape.Skip(1).Aggregate(1L, (a, b) => a * b);
                return new MappedTensor(rule.Component, name, part, rule.Part * rows * perRow);
            default:
                return new MappedTensor(rule.Component, name, shape, 0);
        }
    }

    /// <summary>The original key of a diffusers tensor and the row that maps it; null when no row covers the name.</summary>
    public (string Key, KeyRule Rule)? ToOriginal(string component, string name)
    {
        ArgumentNullException.ThrowIfNull(component);
        ArgumentNullException.ThrowIfNull(name);
        for (string prefix = name; ; prefix = prefix[..prefix.LastIndexOf('.')])
        {
            if (_byDiffusers.TryGetValue((component, prefix), out var rule)) return (rule.OriginalPrefix + name[prefix.Length..], rule);
            if (prefix.LastIndexOf('.') < 0) return null;
        }
    }

    /// <summary>
    /// The stored shape of the original tensor a diffusers tensor of shape <paramref name="shape"/> comes from (a linear
    /// weight becomes a 1x1 conv weight, a fused part gets three times the rows).
    /// </summary>
    public static long[] OriginalShape(KeyRule rule, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(shape);
        return rule.Transform switch
        {
            KeyTransform.ConvToLinear when shape.Length == 2 => [shape[0], shape[1], 1, 1],
            KeyTransform.FusedPart => [shape[0] * KeyRule.FusedParts, .. shape[1..]],
            _ => shape,
        };
    }
}

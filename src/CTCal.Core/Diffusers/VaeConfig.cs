namespace CTCal.Core.Diffusers;

/// <summary><c>vae/config.json</c> of a diffusers <c>AutoencoderKL</c>.</summary>
public sealed record VaeConfig
{
    public string File { get; init; } = "";
    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 3;
    public int LatentChannels { get; init; } = 4;
    public required int[] BlockOutChannels { get; init; }
    public required string[] DownBlockTypes { get; init; }
    public required string[] UpBlockTypes { get; init; }
    public int LayersPerBlock { get; init; } = 1;
    public int NormNumGroups { get; init; } = 32;
    public string ActFn { get; init; } = "silu";
    public int SampleSize { get; init; } = 32;
    public double ScalingFactor { get; init; } = 0.18215;
    /// <summary>
    /// diffusers' <c>shift_factor</c> (SD3: 0.0609); absent or null means 0. Latents for the denoiser are
    /// (z - shift) * scaling, and z = latents / scaling + shift before decoding.
    /// </summary>
    public double ShiftFactor { get; init; }
    /// <summary>diffusers' <c>use_quant_conv</c> (default true; SD3's VAE has none).</summary>
    public bool UseQuantConv { get; init; } = true;
    /// <summary>diffusers' <c>use_post_quant_conv</c> (default true; SD3's VAE has none).</summary>
    public bool UsePostQuantConv { get; init; } = true;
    /// <summary>diffusers' default (true): the mid block has one self-attention.</summary>
    public bool MidBlockAddAttention { get; init; } = true;
    public bool ForceUpcast { get; init; } = true;

    /// <summary>Pixel size divided by latent size: 2^(levels-1).</summary>
    public int DownscaleFactor => 1 << (BlockOutChannels.Length - 1);

    public static VaeConfig Load(string path) => FromJson(JsonConfig.Load(path));

    public static VaeConfig Parse(string json, string file = "vae/config.json") => FromJson(JsonConfig.Parse(file, json));

    private static VaeConfig FromJson(JsonConfig c)
    {
        int[] channels = c.IntArray("block_out_channels");
        if (channels.Length == 0) throw c.Invalid("block_out_channels", "must not be empty");
        var config = new VaeConfig
        {
            File = c.File,
            InChannels = c.Int("in_channels", 3),
            OutChannels = c.Int("out_channels", 3),
            LatentChannels = c.Int("latent_channels", 4),
            BlockOutChannels = channels,
            DownBlockTypes = c.Has("down_block_types") ? c.StringArray("down_block_types") : Enumerable.Repeat("DownEncoderBlock2D", channels.Length).ToArray(),
            UpBlockTypes = c.Has("up_block_types") ? c.StringArray("up_block_types") : Enumerable.Repeat("UpDecoderBlock2D", channels.Length).ToArray(),
            LayersPerBlock = c.Int("layers_per_block", 1),
            NormNumGroups = c.Int("norm_num_groups", 32),
            ActFn = c.String("act_fn", "silu"),
            SampleSize = c.Int("sample_size", 32),
            ScalingFactor = c.Double("scaling_factor", 0.18215),
            ShiftFactor = c.Double("shift_factor", 0.0),
            UseQuantConv = c.Bool("use_quant_conv", true),
            UsePostQuantConv = c.Bool("use_post_quant_conv", true),
            MidBlockAddAttention = c.Bool("mid_block_add_attention", true),
            ForceUpcast = c.Bool("force_upcast", true),
        };
        if (config.DownBlockTypes.Length != channels.Length)
            throw c.Invalid("down_block_types", $"has {config.DownBlockTypes.Length} entries but block_out_channels has {channels.Length}");
        if (config.UpBlockTypes.Length != channels.Length)
            throw c.Invalid("up_block_types", $"has {config.UpBlockTypes.Length} entries but block_out_channels has {channels.Length}");
        if (config.NormNumGroups <= 0) throw c.Invalid("norm_num_groups", $"must be positive, found {config.NormNumGroups}");
        for (int i = 0; i < channels.Length; i++)
        {
            if (config.DownBlockTypes[i] != "DownEncoderBlock2D")
                throw c.Invalid($"down_block_types[{i}]", $"unsupported block type '{config.DownBlockTypes[i]}' (supported: DownEncoderBlock2D)");
            if (config.UpBlockTypes[i] != "UpDecoderBlock2D")
                throw c.Invalid($"up_block_types[{i}]", $"unsupported block type '{config.UpBlockTypes[i]}' (supported: UpDecoderBlock2D)");
            if (channels[i] <= 0 || channels[i] % config.NormNumGroups != 0)
                throw c.Invalid("norm_num_groups", $"{config.NormNumGroups} does not divide block_out_channels[{i}] = {channels[i]}");
        }
        if (config.ActFn != "silu") throw c.Invalid("act_fn", $"'{config.ActFn}' is not supported (only silu)");
        if (config.LayersPerBlock <= 0) throw c.Invalid("layers_per_block", "must be positive");
        if (config.ScalingFactor <= 0) throw c.Invalid("scaling_factor", "must be positive");
        return config;
    }
}

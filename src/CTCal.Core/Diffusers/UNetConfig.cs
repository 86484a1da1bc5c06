namespace CTCal.Core.Diffusers;

/// <summary>
/// <c>unet/config.json</c> of a diffusers <c>UNet2DConditionModel</c> (SD 1.x/2.x family), with diffusers' quirks resolved:
/// <see cref="NumAttentionHeads"/> comes from <c>num_attention_heads</c>, or, when that is absent, from
/// <c>attention_head_dim</c> (which diffusers then treats as the number of heads); both may be an int or a per-block list.
/// </summary>
public sealed record UNetConfig
{
    public string File { get; init; } = "";
    public int InChannels { get; init; } = 4;
    public int OutChannels { get; init; } = 4;
    public int SampleSize { get; init; } = 64;
    public required int[] BlockOutChannels { get; init; }
    public required string[] DownBlockTypes { get; init; }
    public required string[] UpBlockTypes { get; init; }
    public string MidBlockType { get; init; } = "UNetMidBlock2DCrossAttn";
    public int LayersPerBlock { get; init; } = 2;
    /// <summary>Transformer blocks inside each attention of each down block (per down block).</summary>
    public required int[] TransformerLayersPerBlock { get; init; }
    public int CrossAttentionDim { get; init; } = 768;
    /// <summary>Heads of each down block's attentions (index by down block; up blocks use the reverse; mid uses the last).</summary>
    public required int[] NumAttentionHeads { get; init; }
    public bool[] OnlyCrossAttention { get; init; } = [];
    public bool UseLinearProjection { get; init; }
    public bool UpcastAttention { get; init; }
    public int NormNumGroups { get; init; } = 32;
    public double NormEps { get; init; } = 1e-5;
    public bool FlipSinToCos { get; init; } = true;
    public int FreqShift { get; init; }
    public string ActFn { get; init; } = "silu";
    public int DownsamplePadding { get; init; } = 1;
    public double MidBlockScaleFactor { get; init; } = 1.0;
    public bool CenterInputSample { get; init; }
    public int ConvInKernel { get; init; } = 3;
    public int ConvOutKernel { get; init; } = 3;
    public string TimeEmbeddingType { get; init; } = "positional";
    public string ResnetTimeScaleShift { get; init; } = "default";
    public double ResnetOutScaleFactor { get; init; } = 1.0;
    public bool DualCrossAttention { get; init; }
    public string? ClassEmbedType { get; init; }
    public string? AdditionEmbedType { get; init; }
    public int? NumClassEmbeds { get; init; }
    public int? TimeCondProjDim { get; init; }
    public string? EncoderHidDimType { get; init; }
    public string AttentionType { get; init; } = "default";

    /// <summary>Time embedding width: 4 x the first block's channels (diffusers' default when time_embedding_dim is absent).</summary>
    public int TimeEmbeddingDim { get; init; }

    /// <summary>Heads of the mid block's attentions.</summary>
    public int MidBlockHeads => NumAttentionHeads[^1];

    /// <summary>Heads of up block <paramref name="upIndex"/>: diffusers reverses the per-block list for the up path.</summary>
    public int UpBlockHeads(int upIndex) => NumAttentionHeads[NumAttentionHeads.Length - 1 - upIndex];

    /// <summary>Transformer layers of up block <paramref name="upIndex"/> (reversed, like the heads).</summary>
    public int UpBlockTransformerLayers(int upIndex) => TransformerLayersPerBlock[TransformerLayersPerBlock.Length - 1 - upIndex];

    public static readonly string[] SupportedDownBlocks = ["CrossAttnDownBlock2D", "DownBlock2D"];
    public static readonly string[] SupportedUpBlocks = ["CrossAttnUpBlock2D", "UpBlock2D"];
    public static readonly string[] SupportedMidBlocks = ["UNetMidBlock2DCrossAttn"];

    public static UNetConfig Load(string path) => FromJson(JsonConfig.Load(path));

    public static UNetConfig Parse(string json, string file = "unet/config.json") => FromJson(JsonConfig.Parse(file, json));

    private static UNetConfig FromJson(JsonConfig c)
    {
        int[] channels = c.IntArray("block_out_channels");
        if (channels.Length == 0) throw c.Invalid("block_out_channels", "must not be empty");
        string[] down = c.StringArray("down_block_types");
        string[] up = c.StringArray("up_block_types");
        int n = channels.Length;
        if (down.Length != n) throw c.Invalid("down_block_types", $"has {down.Length} entries but block_out_channels has {n}");
        if (up.Length != n) throw c.Invalid("up_block_types", $"has {up.Length} entries but block_out_channels has {n}");

        int[]? heads = c.IntOrIntArray("num_attention_heads", n) ?? c.IntOrIntArray("attention_head_dim", n);
        heads ??= Enumerable.Repeat(8, n).ToArray(); // diffusers' default attention_head_dim = 8
        int[] layersPerTransformer = c.IntOrIntArray("transformer_layers_per_block", n) ?? Enumerable.Repeat(1, n).ToArray();

        var config = new UNetConfig
        {
            File = c.File,
            InChannels = c.Int("in_channels", 4),
            OutChannels = c.Int("out_channels", 4),
            SampleSize = c.Int("sample_size", 64),
            BlockOutChannels = channels,
            DownBlockTypes = down,
            UpBlockTypes = up,
            MidBlockType = c.String("mid_block_type", "UNetMidBlock2DCrossAttn"),
            LayersPerBlock = c.Int("layers_per_block", 2),
            TransformerLayersPerBlock = layersPerTransformer,
            CrossAttentionDim = c.Int("cross_attention_dim", 1280),
            NumAttentionHeads = heads,
            OnlyCrossAttention = c.BoolOrBoolArray("only_cross_attention", n, false),
            UseLinearProjection = c.Bool("use_linear_projection", false),
            UpcastAttention = c.Bool("upcast_attention", false),
            NormNumGroups = c.Int("norm_num_groups", 32),
            NormEps = c.Double("norm_eps", 1e-5),
            FlipSinToCos = c.Bool("flip_sin_to_cos", true),
            FreqShift = c.Int("freq_shift", 0),
            ActFn = c.String("act_fn", "silu"),
            DownsamplePadding = c.Int("downsample_padding", 1),
            MidBlockScaleFactor = c.Double("mid_block_scale_factor", 1.0),
            CenterInputSample = c.Bool("center_input_sample", false),
            ConvInKernel = c.Int("conv_in_kernel", 3),
            ConvOutKernel = c.Int("conv_out_kernel", 3),
            TimeEmbeddingType = c.String("time_embedding_type", "positional"),
            ResnetTimeScaleShift = c.String("resnet_time_scale_shift", "default"),
            ResnetOutScaleFactor = c.Double("resnet_out_scale_factor", 1.0),
            DualCrossAttention = c.Bool("dual_cross_attention", false),
            ClassEmbedType = c.StringOrNull("class_embed_type"),
            AdditionEmbedType = c.StringOrNull("addition_embed_type"),
            NumClassEmbeds = c.IntOrNull("num_class_embeds"),
            TimeCondProjDim = c.IntOrNull("time_cond_proj_dim"),
            EncoderHidDimType = c.StringOrNull("encoder_hid_dim_type"),
            AttentionType = c.String("attention_type", "default"),
            TimeEmbeddingDim = c.IntOrNull("time_embedding_dim") ?? channels[0] * 4,
        };
        config.Validate(c);
        return config;
    }

    /// <summary>
    /// Refuses what the SD 1.x/2.x model code does not build (SDXL add-embeddings, class embeddings, other block types, ...),
    /// naming the field, so a model is never silently built wrong.
    /// </summary>
    private void Validate(JsonConfig c)
    {
        if (NormNumGroups <= 0) throw c.Invalid("norm_num_groups", $"must be positive, found {NormNumGroups}");
        for (int i = 0; i < BlockOutChannels.Length; i++)
        {
            if (BlockOutChannels[i] <= 0) throw c.Invalid($"block_out_channels[{i}]", "must be positive");
            if (BlockOutChannels[i] % NormNumGroups != 0)
                throw c.Invalid("norm_num_groups", $"{NormNumGroups} does not divide block_out_channels[{i}] = {BlockOutChannels[i]}");
            if (NumAttentionHeads[i] <= 0 || BlockOutChannels[i] % NumAttentionHeads[i] != 0)
                throw c.Invalid("attention_head_dim", $"{NumAttentionHeads[i]} heads do not divide block_out_channels[{i}] = {BlockOutChannels[i]}");
            if (Array.IndexOf(SupportedDownBlocks, DownBlockTypes[i]) < 0)
                throw c.Invalid($"down_block_types[{i}]", $"unsupported block type '{DownBlockTypes[i]}' (supported: {string.Join(", ", SupportedDownBlocks)})");
            if (Array.IndexOf(SupportedUpBlocks, UpBlockTypes[i]) < 0)
                throw c.Invalid($"up_block_types[{i}]", $"unsupported block type '{UpBlockTypes[i]}' (supported: {string.Join(", ", SupportedUpBlocks)})");
            if (TransformerLayersPerBlock[i] <= 0) throw c.Invalid("transformer_layers_per_block", "must be positive");
        }
        if (Array.IndexOf(SupportedMidBlocks, MidBlockType) < 0)
            throw c.Invalid("mid_block_type", $"unsupported block type '{MidBlockType}' (supported: {string.Join(", ", SupportedMidBlocks)})");
        if (LayersPerBlock <= 0) throw c.Invalid("layers_per_block", "must be positive");
        if (InChannels <= 0) throw c.Invalid("in_channels", "must be positive");
        if (OutChannels <= 0) throw c.Invalid("out_channels", "must be positive");
        if (CrossAttentionDim <= 0) throw c.Invalid("cross_attention_dim", "must be positive");
        if (ConvInKernel % 2 != 1) throw c.Invalid("conv_in_kernel", "must be odd");
        if (ConvOutKernel % 2 != 1) throw c.Invalid("conv_out_kernel", "must be odd");
        if (ActFn != "silu") throw c.Invalid("act_fn", $"'{ActFn}' is not supported (only silu)");
        if (TimeEmbeddingType != "positional") throw c.Invalid("time_embedding_type", $"'{TimeEmbeddingType}' is not supported (only positional)");
        if (ResnetTimeScaleShift != "default") throw c.Invalid("resnet_time_scale_shift", $"'{ResnetTimeScaleShift}' is not supported (only default)");
        if (ClassEmbedType is not null) throw c.Invalid("class_embed_type", "class embeddings are not supported (SD 1.x/2.x have none)");
        if (NumClassEmbeds is not null) throw c.Invalid("num_class_embeds", "class embeddings are not supported (SD 1.x/2.x have none)");
        if (AdditionEmbedType is not null) throw c.Invalid("addition_embed_type", $"'{AdditionEmbedType}' is not supported (SDXL-style added conditions)");
        if (TimeCondProjDim is not null) throw c.Invalid("time_cond_proj_dim", "timestep-conditioning projections (LCM) are not supported");
        if (EncoderHidDimType is not null) throw c.Invalid("encoder_hid_dim_type", "encoder hidden-state projections are not supported");
        if (DualCrossAttention) throw c.Invalid("dual_cross_attention", "not supported");
        if (AttentionType != "default") throw c.Invalid("attention_type", $"'{AttentionType}' is not supported (only default)");
        if (OnlyCrossAttention.Any(b => b)) throw c.Invalid("only_cross_attention", "not supported (SD 1.x/2.x use self- and cross-attention)");
    }
}

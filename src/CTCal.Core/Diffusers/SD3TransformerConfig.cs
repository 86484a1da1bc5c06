using System.Text.Json;

namespace CTCal.Core.Diffusers;

/// <summary>
/// <c>transformer/config.json</c> of a diffusers <c>SD3Transformer2DModel</c> (Stable Diffusion 3, the MMDiT of diffusers
/// 0.29), with diffusers' defaults for absent fields. Unknown fields are ignored, like <see cref="UNetConfig"/> does; the
/// SD3.5 additions of later diffusers versions (<c>qk_norm</c>, <c>dual_attention_layers</c>) are refused when they ask for
/// something, because the 0.29 model has neither and would be built silently wrong.
/// </summary>
/// <remarks>
/// diffusers 0.29 builds every block with width <see cref="InnerDim"/> = heads x head dim, and projects the text states
/// to <see cref="CaptionProjectionDim"/>; the two must be equal (as in every published SD3 config).
/// </remarks>
public sealed record SD3TransformerConfig
{
    public string File { get; init; } = "";
    /// <summary>Latent side the position table's base size is derived from (base = sample_size / patch_size).</summary>
    public int SampleSize { get; init; } = 128;
    public int PatchSize { get; init; } = 2;
    public int InChannels { get; init; } = 16;
    public int OutChannels { get; init; } = 16;
    /// <summary>Number of <c>JointTransformerBlock</c>s; the last one is context_pre_only.</summary>
    public int NumLayers { get; init; } = 18;
    public int AttentionHeadDim { get; init; } = 64;
    public int NumAttentionHeads { get; init; } = 18;
    /// <summary>Width of the text encoders' concatenated states (encoder_hidden_states).</summary>
    public int JointAttentionDim { get; init; } = 4096;
    /// <summary>Width of the text stream after <c>context_embedder</c>.</summary>
    public int CaptionProjectionDim { get; init; } = 1152;
    /// <summary>Width of the pooled text embedding (pooled_projections).</summary>
    public int PooledProjectionDim { get; init; } = 2048;
    /// <summary>Side of the stored sin-cos position table, in patches; the forward crops its centre.</summary>
    public int PosEmbedMaxSize { get; init; } = 96;

    /// <summary>Width of both streams inside the blocks: heads x head dim.</summary>
    public int InnerDim => NumAttentionHeads * AttentionHeadDim;

    public static SD3TransformerConfig Load(string path) => FromJson(JsonConfig.Load(path));

    public static SD3TransformerConfig Parse(string json, string file = "transformer/config.json") => FromJson(JsonConfig.Parse(file, json));

    private static SD3TransformerConfig FromJson(JsonConfig c)
    {
        string? className = c.StringOrNull("_class_name");
        if (className is not null && className != "SD3Transformer2DModel")
            throw c.Invalid("_class_name", $"'{className}' is not an SD3Transformer2DModel");
        RefuseLaterFeatures(c);

        // diffusers passes an explicit null straight through (PatchEmbed then uses an uncropped, non-persistent table);
        // JsonConfig reads null as absent, so look for it before taking the default.
        if (c.FieldNames().Contains("pos_embed_max_size") && !c.Has("pos_embed_max_size"))
            throw c.Invalid("pos_embed_max_size", "null (no cropped position table) is not supported; SD3 configs set it");

        int inChannels = c.Int("in_channels", 16);
        var config = new SD3TransformerConfig
        {
            File = c.File,
            SampleSize = c.Int("sample_size", 128),
            PatchSize = c.Int("patch_size", 2),
            InChannels = inChannels,
            OutChannels = c.IntOrNull("out_channels") ?? inChannels, // diffusers: out_channels or in_channels
            NumLayers = c.Int("num_layers", 18),
            AttentionHeadDim = c.Int("attention_head_dim", 64),
            NumAttentionHeads = c.Int("num_attention_heads", 18),
            JointAttentionDim = c.Int("joint_attention_dim", 4096),
            CaptionProjectionDim = c.Int("caption_projection_dim", 1152),
            PooledProjectionDim = c.Int("pooled_projection_dim", 2048),
            PosEmbedMaxSize = c.Int("pos_embed_max_size", 96),
        };
        config.Validate(c);
        return config;
    }

    /// <summary>
    /// SD3.5's query/key norms and dual-attention (MMDiT-X) layers, which diffusers 0.29 does not have. Absent, null,
    /// or an empty layer list mean "off" (later diffusers write them that way for SD3 medium) and are accepted.
    /// </summary>
    private static void RefuseLaterFeatures(JsonConfig c)
    {
        if (c.Raw("qk_norm") is { } qk)
            throw c.Invalid("qk_norm", $"query/key normalisation ({(qk.ValueKind == JsonValueKind.String ? $"'{qk.GetString()}'" : qk.ValueKind.ToString().ToLowerInvariant())}) is an SD3.5 feature the SD3 (diffusers 0.29) model does not have");
        if (c.Raw("dual_attention_layers") is { } dual)
        {
            if (dual.ValueKind != JsonValueKind.Array)
                throw c.Invalid("dual_attention_layers", $"expected a list of layer indices, found {dual.ValueKind.ToString().ToLowerInvariant()}");
            if (dual.GetArrayLength() > 0)
                throw c.Invalid("dual_attention_layers", "dual-attention (MMDiT-X) layers are an SD3.5 feature the SD3 (diffusers 0.29) model does not have");
        }
    }

    private void Validate(JsonConfig c)
    {
        void Positive(string field, int value)
        {
            if (value <= 0) throw c.Invalid(field, $"must be positive, found {value}");
        }
        Positive("sample_size", SampleSize);
        Positive("patch_size", PatchSize);
        Positive("in_channels", InChannels);
        Positive("out_channels", OutChannels);
        Positive("num_layers", NumLayers);
        Positive("attention_head_dim", AttentionHeadDim);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("joint_attention_dim", JointAttentionDim);
        Positive("caption_projection_dim", CaptionProjectionDim);
        Positive("pooled_projection_dim", PooledProjectionDim);
        Positive("pos_embed_max_size", PosEmbedMaxSize);
        if (SampleSize % PatchSize != 0)
            throw c.Invalid("sample_size", $"{SampleSize} is not a multiple of patch_size {PatchSize}");
        if (SampleSize / PatchSize > PosEmbedMaxSize)
            throw c.Invalid("pos_embed_max_size", $"{PosEmbedMaxSize} patches is smaller than sample_size / patch_size = {SampleSize / PatchSize}");
        if ((long)NumAttentionHeads * AttentionHeadDim > int.MaxValue)
            throw c.Invalid("num_attention_heads", "num_attention_heads x attention_head_dim is too large");
        if (InnerDim % 4 != 0)
            throw c.Invalid("attention_head_dim", $"num_attention_heads x attention_head_dim = {InnerDim} must be a multiple of 4 (2-D sin-cos position table)");
        if (CaptionProjectionDim != InnerDim)
            throw c.Invalid("caption_projection_dim",
                $"{CaptionProjectionDim} differs from num_attention_heads x attention_head_dim = {InnerDim}; the joint attention needs both streams equally wide");
    }
}

namespace CTCal.Core.Diffusers;

/// <summary><c>text_encoder/config.json</c> of a transformers <c>CLIPTextModel</c> (SD1: quick_gelu; SD2/OpenCLIP: gelu).</summary>
public sealed record ClipTextConfig
{
    public string File { get; init; } = "";
    public int VocabSize { get; init; } = 49408;
    public int HiddenSize { get; init; } = 512;
    public int IntermediateSize { get; init; } = 2048;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 8;
    public int MaxPositionEmbeddings { get; init; } = 77;
    public string HiddenAct { get; init; } = "quick_gelu";
    public double LayerNormEps { get; init; } = 1e-5;
    public int BosTokenId { get; init; } = 49406;
    /// <summary>
    /// End-of-text id. Legacy configs say 2, in which case transformers pools at argmax(input_ids) (the EOT token has the
    /// largest id in CLIP's vocabulary); otherwise it pools at the first position holding this id.
    /// </summary>
    public int EosTokenId { get; init; } = 49407;
    public int PadTokenId { get; init; } = 1;
    /// <summary>Width of <c>text_projection</c> in a <c>CLIPTextModelWithProjection</c> (SD3: CLIP-L 768, CLIP-G 1280).</summary>
    public int ProjectionDim { get; init; } = 512;

    /// <summary>True when pooling uses transformers' legacy argmax rule (eos_token_id == 2).</summary>
    public bool LegacyArgmaxPooling => EosTokenId == 2;

    public int HeadDim => HiddenSize / NumAttentionHeads;

    public static ClipTextConfig Load(string path) => FromJson(JsonConfig.Load(path));

    public static ClipTextConfig Parse(string json, string file = "text_encoder/config.json") => FromJson(JsonConfig.Parse(file, json));

    private static ClipTextConfig FromJson(JsonConfig c)
    {
        var config = new ClipTextConfig
        {
            File = c.File,
            VocabSize = c.Int("vocab_size", 49408),
            HiddenSize = c.Int("hidden_size"),
            IntermediateSize = c.Int("intermediate_size"),
            NumHiddenLayers = c.Int("num_hidden_layers"),
            NumAttentionHeads = c.Int("num_attention_heads"),
            MaxPositionEmbeddings = c.Int("max_position_embeddings", 77),
            HiddenAct = c.String("hidden_act", "quick_gelu"),
            LayerNormEps = c.Double("layer_norm_eps", 1e-5),
            BosTokenId = c.Int("bos_token_id", 49406),
            EosTokenId = c.Int("eos_token_id", 49407),
            PadTokenId = c.Int("pad_token_id", 1),
            ProjectionDim = c.Int("projection_dim", 512),
        };
        if (config.HiddenSize <= 0) throw c.Invalid("hidden_size", "must be positive");
        if (config.NumAttentionHeads <= 0 || config.HiddenSize % config.NumAttentionHeads != 0)
            throw c.Invalid("num_attention_heads", $"{config.NumAttentionHeads} does not divide hidden_size {config.HiddenSize}");
        if (config.HiddenAct is not ("quick_gelu" or "gelu"))
            throw c.Invalid("hidden_act", $"'{config.HiddenAct}' is not supported (quick_gelu or gelu)");
        if (config.NumHiddenLayers <= 0) throw c.Invalid("num_hidden_layers", "must be positive");
        if (config.VocabSize <= 0) throw c.Invalid("vocab_size", "must be positive");
        if (config.MaxPositionEmbeddings <= 0) throw c.Invalid("max_position_embeddings", "must be positive");
        if (config.ProjectionDim <= 0) throw c.Invalid("projection_dim", "must be positive");
        return config;
    }
}

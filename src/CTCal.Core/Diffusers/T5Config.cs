namespace CTCal.Core.Diffusers;

/// <summary>
/// <c>text_encoder_3/config.json</c> of a transformers <c>T5EncoderModel</c> (T5 v1.1 as SD3 uses it: gated-GELU
/// feed-forward, no biases, RMS layer norm, bidirectional relative position buckets).
/// </summary>
public sealed record T5Config
{
    /// <summary>The only feed-forward variant ported (T5 v1.1; transformers maps it to the tanh "gelu_new" activation).</summary>
    public const string GatedGelu = "gated-gelu";

    public string File { get; init; } = "";
    public int VocabSize { get; init; } = 32128;
    public int DModel { get; init; } = 512;
    /// <summary>Per-head width; inner attention width is <see cref="NumHeads"/> * <see cref="DKv"/> (not necessarily d_model).</summary>
    public int DKv { get; init; } = 64;
    public int DFf { get; init; } = 2048;
    public int NumLayers { get; init; } = 6;
    public int NumHeads { get; init; } = 8;
    public int RelativeAttentionNumBuckets { get; init; } = 32;
    public int RelativeAttentionMaxDistance { get; init; } = 128;
    public string FeedForwardProj { get; init; } = GatedGelu;
    public double LayerNormEpsilon { get; init; } = 1e-6;

    public int InnerDim => NumHeads * DKv;

    public static T5Config Load(string path) => FromJson(JsonConfig.Load(path));

    public static T5Config Parse(string json, string file = "text_encoder_3/config.json") => FromJson(JsonConfig.Parse(file, json));

    private static T5Config FromJson(JsonConfig c)
    {
        var config = new T5Config
        {
            File = c.File,
            VocabSize = c.Int("vocab_size", 32128),
            DModel = c.Int("d_model"),
            DKv = c.Int("d_kv"),
            DFf = c.Int("d_ff"),
            NumLayers = c.Int("num_layers"),
            NumHeads = c.Int("num_heads"),
            RelativeAttentionNumBuckets = c.Int("relative_attention_num_buckets", 32),
            RelativeAttentionMaxDistance = c.Int("relative_attention_max_distance", 128),
            // transformers' T5Config default is "relu" (T5 v1.0); an absent key therefore means the unported variant.
            FeedForwardProj = c.String("feed_forward_proj", "relu"),
            LayerNormEpsilon = c.Double("layer_norm_epsilon", 1e-6),
        };
        if (config.FeedForwardProj != GatedGelu)
            throw c.Invalid("feed_forward_proj", $"'{config.FeedForwardProj}' is not supported (only \"{GatedGelu}\", T5 v1.1 as used by SD3)");
        if (config.DModel <= 0) throw c.Invalid("d_model", "must be positive");
        if (config.DKv <= 0) throw c.Invalid("d_kv", "must be positive");
        if (config.DFf <= 0) throw c.Invalid("d_ff", "must be positive");
        if (config.NumLayers <= 0) throw c.Invalid("num_layers", "must be positive");
        if (config.NumHeads <= 0) throw c.Invalid("num_heads", "must be positive");
        if (config.VocabSize <= 0) throw c.Invalid("vocab_size", "must be positive");
        // Bidirectional buckets halve the count, then half of that is exact: at least 4 keeps every range non-empty.
        if (config.RelativeAttentionNumBuckets < 4 || config.RelativeAttentionNumBuckets % 2 != 0)
            throw c.Invalid("relative_attention_num_buckets", $"must be an even number >= 4, found {config.RelativeAttentionNumBuckets}");
        if (config.RelativeAttentionMaxDistance <= config.RelativeAttentionNumBuckets / 4)
            throw c.Invalid("relative_attention_max_distance",
                $"must exceed the exact range num_buckets/4 = {config.RelativeAttentionNumBuckets / 4}, found {config.RelativeAttentionMaxDistance}");
        if (!(config.LayerNormEpsilon > 0)) throw c.Invalid("layer_norm_epsilon", "must be positive");
        return config;
    }
}

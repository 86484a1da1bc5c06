using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

// diffusers.pipelines.stable_diffusion_3.StableDiffusion3Pipeline.encode_prompt (0.29.2): _get_clip_prompt_embeds for
// text_encoder (CLIP-L) and text_encoder_2 (CLIP-G), _get_t5_prompt_embeds for text_encoder_3, and their assembly.
/// <summary>
/// SD3's joint text conditioning. Each CLIP encoder gives its penultimate hidden state (<c>hidden_states[-2]</c>, no
/// final_layer_norm; <c>hidden_states[-(clip_skip + 2)]</c> with a clip skip) and its pooled projection. Then
/// <c>prompt_embeds</c> = cat(pad(cat(L, G, features), to T5's width), T5, sequence) and
/// <c>pooled_prompt_embeds</c> = cat(pooled L, pooled G, features). Without T5 the pipeline uses zeros
/// [B, tokenizer_max_length (77), joint_attention_dim].
/// </summary>
/// <remarks>
/// SD3-medium: CLIP-L 768 + CLIP-G 1280 = 2048 features padded to T5-XXL's 4096 (= the transformer's
/// joint_attention_dim); CLIP sequences 77; T5 sequence = max_sequence_length (256 by default since diffusers 0.29.1,
/// 77 in 0.29.0). So prompt_embeds is [B, 77 + 256, 4096] with T5 (or [B, 154, 4096] without it) and
/// pooled_prompt_embeds [B, 2048]. The modules are borrowed, not owned.
/// </remarks>
public sealed class SD3PromptEncoder
{
    /// <summary>The CLIP tokenizers' model_max_length, which sizes the T5-absent zeros.</summary>
    public const int DefaultTokenizerMaxLength = 77;

    private readonly CLIPTextModelWithProjection _clipL;
    private readonly CLIPTextModelWithProjection _clipG;
    private readonly T5EncoderModel? _t5;

    /// <param name="clipL">text_encoder (CLIP ViT-L/14 text tower with projection).</param>
    /// <param name="clipG">text_encoder_2 (OpenCLIP bigG text tower with projection).</param>
    /// <param name="t5">text_encoder_3, or null to use zeros as the pipeline does when it is dropped.</param>
    /// <param name="jointAttentionDim">The SD3 transformer's joint_attention_dim (4096); T5's d_model must equal it.</param>
    /// <param name="tokenizerMaxLength">The CLIP tokenizer's model_max_length (77), the sequence length of the zeros.</param>
    public SD3PromptEncoder(CLIPTextModelWithProjection clipL, CLIPTextModelWithProjection clipG, T5EncoderModel? t5,
        int jointAttentionDim, int tokenizerMaxLength = DefaultTokenizerMaxLength)
    {
        ArgumentNullException.ThrowIfNull(clipL);
        ArgumentNullException.ThrowIfNull(clipG);
        if (jointAttentionDim <= 0) throw new ArgumentOutOfRangeException(nameof(jointAttentionDim), jointAttentionDim, "must be positive");
        if (tokenizerMaxLength <= 0) throw new ArgumentOutOfRangeException(nameof(tokenizerMaxLength), tokenizerMaxLength, "must be positive");
        if (t5 is not null && t5.Config.DModel != jointAttentionDim)
            throw new ArgumentException($"T5 d_model {t5.Config.DModel} ({t5.Config.File}) differs from joint_attention_dim {jointAttentionDim}", nameof(t5));
        int clipWidth = clipL.Config.HiddenSize + clipG.Config.HiddenSize;
        // torch's pad with a negative width would crop; SD3 never does that, so refuse instead of dropping features.
        if (clipWidth > jointAttentionDim)
            throw new ArgumentException($"CLIP-L hidden {clipL.Config.HiddenSize} + CLIP-G hidden {clipG.Config.HiddenSize} exceeds joint_attention_dim {jointAttentionDim}", nameof(jointAttentionDim));
        _clipL = clipL;
        _clipG = clipG;
        _t5 = t5;
        JointAttentionDim = jointAttentionDim;
        TokenizerMaxLength = tokenizerMaxLength;
    }

    public int JointAttentionDim { get; }
    public int TokenizerMaxLength { get; }
    public bool HasT5 => _t5 is not null;

    /// <summary>Width of pooled_prompt_embeds: CLIP-L projection_dim + CLIP-G projection_dim (SD3: 768 + 1280).</summary>
    public int PooledDim => _clipL.Config.ProjectionDim + _clipG.Config.ProjectionDim;

    /// <param name="clipLIds">[B, 77] ids for CLIP-L (padded to max_length with its tokenizer).</param>
    /// <param name="clipGIds">[B, 77] ids for CLIP-G (tokenizer_2: same vocabulary, pads with "!" = 0).</param>
    /// <param name="t5Ids">[B, max_sequence_length] ids for T5 (ignored, and may be null, when there is no T5).</param>
    /// <param name="clipSkip">diffusers' clip_skip: null takes hidden_states[-2], n takes hidden_states[-(n + 2)].</param>
    /// <returns>PromptEmbeds [B, 77 + T5 length, joint_attention_dim]; PooledPromptEmbeds [B, <see cref="PooledDim"/>].</returns>
    public (Tensor PromptEmbeds, Tensor PooledPromptEmbeds) Encode(Tensor clipLIds, Tensor clipGIds, Tensor? t5Ids, int? clipSkip = null)
    {
        ArgumentNullException.ThrowIfNull(clipLIds);
        ArgumentNullException.ThrowIfNull(clipGIds);
        if (clipLIds.dim() != 2 || clipGIds.dim() != 2) throw new ArgumentException("CLIP ids must be [B, T]");
        long batch = clipLIds.shape[0];
        if (clipGIds.shape[0] != batch) throw new ArgumentException($"CLIP-G ids have batch {clipGIds.shape[0]}, CLIP-L ids {batch}", nameof(clipGIds));
        if (_t5 is not null)
        {
            if (t5Ids is null) throw new ArgumentNullException(nameof(t5Ids), "the encoder has T5, so T5 ids are required");
            if (t5Ids.dim() != 2 || t5Ids.shape[0] != batch)
                throw new ArgumentException($"T5 ids must be [{batch}, T], got [{string.Join(", ", t5Ids.shape)}]", nameof(t5Ids));
        }

        using var scope = NewDisposeScope();
        var (stateL, pooledL) = ClipEmbeds(_clipL, clipLIds, clipSkip);         // [B, 77, 768], [B, 768]
        var (stateG, pooledG) = ClipEmbeds(_clipG, clipGIds, clipSkip);         // [B, 77, 1280], [B, 1280]
        // The pipeline casts each CLIP state to text_encoder's dtype (and the T5-absent zeros too).
        var dtype = stateL.dtype;
        var t5States = _t5 is not null
            ? _t5.forward(t5Ids!)                                               // [B, T5 length, 4096]
            : zeros([batch, TokenizerMaxLength, JointAttentionDim], dtype: dtype, device: stateL.device);
        var prompt = Assemble(stateL, stateG.to(dtype), t5States);
        var pooled = cat([pooledL, pooledG], -1);                              // [B, 2048]
        return (prompt.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// encode_prompt's assembly: cat(L, G) on features, zero-padded on the right to <paramref name="t5States"/>' width,
    /// then cat with it on the sequence axis.
    /// </summary>
    /// <param name="clipLStates">[B, S, dL].</param>
    /// <param name="clipGStates">[B, S, dG].</param>
    /// <param name="t5States">[B, S5, D] with D &gt;= dL + dG.</param>
    /// <returns>[B, S + S5, D].</returns>
    public static Tensor Assemble(Tensor clipLStates, Tensor clipGStates, Tensor t5States)
    {
        ArgumentNullException.ThrowIfNull(clipLStates);
        ArgumentNullException.ThrowIfNull(clipGStates);
        ArgumentNullException.ThrowIfNull(t5States);
        using var scope = NewDisposeScope();
        var clip = cat([clipLStates, clipGStates], -1);                        // [B, S, dL + dG]
        long pad = t5States.shape[^1] - clip.shape[^1];
        if (pad < 0) throw new ArgumentException($"CLIP width {clip.shape[^1]} exceeds T5 width {t5States.shape[^1]}", nameof(t5States));
        clip = nn.functional.pad(clip, [0, pad]);                              // [B, S, D]
        return cat([clip, t5States], -2).MoveToOuterDisposeScope();            // [B, S + S5, D]
    }

    /// <summary>_get_clip_prompt_embeds: (hidden_states[-(clip_skip ?? 0) - 2], text_embeds).</summary>
    public static (Tensor PromptEmbeds, Tensor PooledPromptEmbeds) ClipEmbeds(CLIPTextModelWithProjection clip, Tensor ids, int? clipSkip = null)
    {
        ArgumentNullException.ThrowIfNull(clip);
        int fromEnd = (clipSkip ?? 0) + 2;
        int count = clip.Config.NumHiddenLayers + 1;
        if (clipSkip < 0 || fromEnd > count)
            throw new ArgumentOutOfRangeException(nameof(clipSkip), clipSkip, $"must be in [0, {count - 2}] for {clip.Config.NumHiddenLayers} layers");
        using var scope = NewDisposeScope();
        var (embeds, _, hidden) = clip.forward(ids);
        return (hidden[^fromEnd].MoveToOuterDisposeScope(), embeds.MoveToOuterDisposeScope());
    }
}

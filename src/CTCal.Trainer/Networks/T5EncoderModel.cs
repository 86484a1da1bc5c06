using CTCal.Core.Diffusers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// transformers.models.t5.modeling_t5.T5EncoderModel (Raffel et al. 2020), the T5 v1.1 variant SD3 uses as text_encoder_3.
/// <summary>
/// The T5 encoder: <c>shared</c> token embedding, <c>encoder.block.N</c> (pre-norm self-attention with relative position
/// bias, gated-GELU feed-forward), <c>encoder.final_layer_norm</c>. Returns the last hidden state [B, T, d_model].
/// Dropout is omitted (the encoder is frozen; transformers' dropout is the identity in eval mode). Like SD3's pipeline,
/// no attention mask is taken: padding tokens are attended to.
/// </summary>
/// <remarks>
/// transformers ties <c>encoder.embed_tokens.weight</c> to <c>shared.weight</c>. Here the embedding exists once, as
/// <c>shared</c>; a file may carry the tied copy too (it is in <see cref="IgnorableKeys"/> and is not read), but must
/// carry <c>shared.weight</c> (what transformers' save_pretrained keeps), else the load fails naming it.
/// </remarks>
public sealed class T5EncoderModel : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly Embedding shared;
    private readonly T5Stack encoder;
#pragma warning restore IDE1006

    public T5EncoderModel(T5Config config) : base(nameof(T5EncoderModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        shared = Embedding(config.VocabSize, config.DModel);
        encoder = new T5Stack(config);
        RegisterComponents();
    }

    public T5Config Config { get; }

    /// <summary>The tied copy of <c>shared.weight</c>, which a loader may skip.</summary>
    public static IReadOnlyList<string> IgnorableKeys { get; } = ["encoder.embed_tokens.weight"];

    /// <param name="inputIds">[B, T] token ids (int64).</param>
    /// <returns>last_hidden_state [B, T, d_model].</returns>
    public override Tensor forward(Tensor inputIds)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input_ids must be [B, T], got [{string.Join(", ", inputIds.shape)}]", nameof(inputIds));
        using var scope = NewDisposeScope();
        var h = shared.forward(inputIds.to(ScalarType.Int64));               // [B, T, d_model]
        return encoder.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>transformers' T5Stack as an encoder: <c>block.N</c>, <c>final_layer_norm</c>; block 0's bias is shared by all blocks.</summary>
public sealed class T5Stack : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<T5Block> block;
    private readonly T5LayerNorm final_layer_norm;
#pragma warning restore IDE1006

    public T5Stack(T5Config config) : base(nameof(T5Stack))
    {
        block = new ModuleList<T5Block>(Enumerable.Range(0, config.NumLayers).Select(i => new T5Block(config, hasRelativeAttentionBias: i == 0)).ToArray());
        final_layer_norm = new T5LayerNorm(config.DModel, config.LayerNormEpsilon);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h)
    {
        using var scope = NewDisposeScope();
        var bias = block[0].PositionBias(h.shape[1], h.device).to(h.dtype);  // [1, heads, T, T]
        foreach (var b in block) h = b.forward(h, bias);
        return final_layer_norm.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>transformers' T5Block (encoder): <c>layer.0</c> = T5LayerSelfAttention, <c>layer.1</c> = T5LayerFF.</summary>
public sealed class T5Block : Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<Module> layer;
#pragma warning restore IDE1006

    public T5Block(T5Config config, bool hasRelativeAttentionBias) : base(nameof(T5Block))
    {
        layer = new ModuleList<Module>(new T5LayerSelfAttention(config, hasRelativeAttentionBias), new T5LayerFF(config));
        RegisterComponents();
    }

    private T5LayerSelfAttention SelfAttentionLayer => (T5LayerSelfAttention)layer[0];

    private T5LayerFF FeedForwardLayer => (T5LayerFF)layer[1];

    /// <summary>The relative position bias [1, heads, T, T]; only the block built with the bias table has it.</summary>
    public Tensor PositionBias(long length, Device device) => SelfAttentionLayer.PositionBias(length, device);

    /// <param name="x">[B, T, d_model].</param>
    /// <param name="positionBias">[1, heads, T, T], added to the attention scores.</param>
    public override Tensor forward(Tensor x, Tensor positionBias)
    {
        using var scope = NewDisposeScope();
        var h = ClampHalf(SelfAttentionLayer.forward(x, positionBias));
        h = ClampHalf(FeedForwardLayer.forward(h));
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>transformers' fp16 guard: when a half-precision state holds an inf, clamp to +-(65504 - 1000).</summary>
    private static Tensor ClampHalf(Tensor h)
    {
        if (h.dtype != ScalarType.Float16 || !h.isinf().any().item<bool>()) return h;
        const double clamp = 65504.0 - 1000.0;
        return h.clamp(-clamp, clamp);
    }
}

/// <summary>transformers' T5LayerSelfAttention: x + SelfAttention(layer_norm(x)).</summary>
public sealed class T5LayerSelfAttention : Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly T5Attention SelfAttention;
    private readonly T5LayerNorm layer_norm;
#pragma warning restore IDE1006

    public T5LayerSelfAttention(T5Config config, bool hasRelativeAttentionBias) : base(nameof(T5LayerSelfAttention))
    {
        SelfAttention = new T5Attention(config, hasRelativeAttentionBias);
        layer_norm = new T5LayerNorm(config.DModel, config.LayerNormEpsilon);
        RegisterComponents();
    }

    public Tensor PositionBias(long length, Device device) => SelfAttention.PositionBias(length, device);

    public override Tensor forward(Tensor x, Tensor positionBias) => x.add(SelfAttention.forward(layer_norm.forward(x), positionBias));
}

/// <summary>
/// transformers' T5Attention (encoder self-attention): q/k/v/o without bias, scores q·kᵀ with no 1/sqrt(d) scaling plus
/// the relative position bias, softmax in fp32. The bias table <c>relative_attention_bias</c> [num_buckets, heads] exists
/// in block 0 only.
/// </summary>
public sealed class T5Attention : Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear q;
    private readonly Linear k;
    private readonly Linear v;
    private readonly Linear o;
    private readonly Embedding? relative_attention_bias;
#pragma warning restore IDE1006
    private readonly int _heads;
    private readonly int _dKv;
    private readonly int _numBuckets;
    private readonly int _maxDistance;

    public T5Attention(T5Config config, bool hasRelativeAttentionBias) : base(nameof(T5Attention))
    {
        _heads = config.NumHeads;
        _dKv = config.DKv;
        _numBuckets = config.RelativeAttentionNumBuckets;
        _maxDistance = config.RelativeAttentionMaxDistance;
        q = Linear(config.DModel, config.InnerDim, hasBias: false);
        k = Linear(config.DModel, config.InnerDim, hasBias: false);
        v = Linear(config.DModel, config.InnerDim, hasBias: false);
        o = Linear(config.InnerDim, config.DModel, hasBias: false);
        if (hasRelativeAttentionBias) relative_attention_bias = Embedding(config.RelativeAttentionNumBuckets, config.NumHeads);
        RegisterComponents();
    }

    /// <summary>transformers' compute_bias for a length-T self-attention: [1, heads, T(query), T(key)].</summary>
    public Tensor PositionBias(long length, Device device)
    {
        if (relative_attention_bias is null) throw new InvalidOperationException("only the first T5 block holds relative_attention_bias");
        using var scope = NewDisposeScope();
        var query = torch.arange(length, dtype: ScalarType.Int64, device: device).unsqueeze(1); // [T, 1]
        var key = torch.arange(length, dtype: ScalarType.Int64, device: device).unsqueeze(0);   // [1, T]
        var buckets = RelativePositionBucket(key.sub(query), _numBuckets, _maxDistance);       // [T, T]
        var values = relative_attention_bias.forward(buckets);                                 // [T, T, heads]
        return values.permute(2, 0, 1).unsqueeze(0).MoveToOuterDisposeScope();                  // [1, heads, T, T]
    }

    /// <summary>
    /// transformers' T5Attention._relative_position_bucket with bidirectional = true (the encoder). For
    /// r = key - query: half the buckets are for r &gt; 0; within a half, |r| &lt; n/2 (n = num_buckets/2) maps to itself and
    /// larger |r| to n/2 + floor(log(|r| / (n/2)) / log(max_distance / (n/2)) * (n - n/2)), capped at n - 1. The
    /// logarithm is taken in fp32, as in transformers.
    /// </summary>
    /// <param name="relativePosition">int64 key position - query position, any shape.</param>
    /// <returns>int64 bucket indices in [0, numBuckets), same shape.</returns>
    public static Tensor RelativePositionBucket(Tensor relativePosition, int numBuckets, int maxDistance)
    {
        using var scope = NewDisposeScope();
        int half = numBuckets / 2;
        var offset = relativePosition.gt(0).to(ScalarType.Int64).mul(half);
        var distance = relativePosition.abs();
        int maxExact = half / 2;
        var isSmall = distance.lt(maxExact);
        // Masked out below where distance < maxExact (including 0, whose log is -inf).
        var large = distance.to(ScalarType.Float32).div(maxExact).log()
            .div(Math.Log((double)maxDistance / maxExact)).mul(half - maxExact)
            .to(ScalarType.Int64).add(maxExact);
        large = torch.minimum(large, torch.full_like(large, half - 1));
        return offset.add(torch.where(isSmall, distance, large)).MoveToOuterDisposeScope();
    }

    /// <param name="x">[B, T, d_model] (already layer-normed).</param>
    /// <param name="positionBias">[1, heads, T, T].</param>
    public override Tensor forward(Tensor x, Tensor positionBias)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var qh = q.forward(x).view(b, t, _heads, _dKv).transpose(1, 2);         // [B, heads, T, d_kv]
        var kh = k.forward(x).view(b, t, _heads, _dKv).transpose(1, 2);         // [B, heads, T, d_kv]
        var vh = v.forward(x).view(b, t, _heads, _dKv).transpose(1, 2);         // [B, heads, T, d_kv]
        var scores = qh.matmul(kh.transpose(2, 3)).add(positionBias);           // [B, heads, T, T]
        var weights = functional.softmax(scores.to(ScalarType.Float32), -1).to(scores.dtype);
        var attn = weights.matmul(vh).transpose(1, 2).reshape(b, t, _heads * _dKv); // [B, T, inner]
        return o.forward(attn).MoveToOuterDisposeScope();
    }
}

/// <summary>transformers' T5LayerFF: x + DenseReluDense(layer_norm(x)).</summary>
public sealed class T5LayerFF : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly T5DenseGatedActDense DenseReluDense;
    private readonly T5LayerNorm layer_norm;
#pragma warning restore IDE1006

    public T5LayerFF(T5Config config) : base(nameof(T5LayerFF))
    {
        DenseReluDense = new T5DenseGatedActDense(config);
        layer_norm = new T5LayerNorm(config.DModel, config.LayerNormEpsilon);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => x.add(DenseReluDense.forward(layer_norm.forward(x)));
}

/// <summary>
/// transformers' T5DenseGatedActDense for feed_forward_proj "gated-gelu": wo(gelu_new(wi_0(x)) * wi_1(x)), no biases,
/// gelu_new being the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
/// </summary>
public sealed class T5DenseGatedActDense : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear wi_0;
    private readonly Linear wi_1;
    private readonly Linear wo;
#pragma warning restore IDE1006

    public T5DenseGatedActDense(T5Config config) : base(nameof(T5DenseGatedActDense))
    {
        wi_0 = Linear(config.DModel, config.DFf, hasBias: false);
        wi_1 = Linear(config.DModel, config.DFf, hasBias: false);
        wo = Linear(config.DFf, config.DModel, hasBias: false);
        RegisterComponents();
    }

    /// <summary>transformers' NewGELUActivation ("gelu_new").</summary>
    public static Tensor GeluNew(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = x.add(x.pow(3.0).mul(0.044715)).mul(Math.Sqrt(2.0 / Math.PI));
        return x.mul(0.5).mul(inner.tanh().add(1.0)).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = GeluNew(wi_0.forward(x)).mul(wi_1.forward(x));                  // [B, T, d_ff]
        if (h.dtype != wo.weight!.dtype) h = h.to(wo.weight.dtype);
        return wo.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// transformers' T5LayerNorm: RMS norm without mean subtraction or bias, weight * x / sqrt(mean(x^2) + eps), the variance
/// computed in fp32; the result is cast back to a half-precision weight's dtype.
/// </summary>
public sealed class T5LayerNorm : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Parameter weight;
#pragma warning restore IDE1006
    private readonly double _eps;

    public T5LayerNorm(int size, double eps) : base(nameof(T5LayerNorm))
    {
        weight = new Parameter(torch.ones(size));
        weight.DetachFromDisposeScope(); // owned by the module, not by a scope the constructor may run in
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var variance = x.to(ScalarType.Float32).pow(2).mean([-1L], keepdim: true); // [..., 1]
        var h = x.mul(variance.add(_eps).rsqrt());                                 // fp32 (type promotion)
        if (weight.dtype is ScalarType.Float16 or ScalarType.BFloat16) h = h.to(weight.dtype);
        return weight.mul(h).MoveToOuterDisposeScope();
    }
}

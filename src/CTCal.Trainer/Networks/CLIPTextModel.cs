using CTCal.Core.Diffusers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// transformers.models.clip.modeling_clip.CLIPTextModel (pre-LN transformer with a causal mask, Radford et al. 2021).
/// <summary>
/// The SD text encoder: <c>text_model.embeddings</c>, <c>text_model.encoder.layers.N</c>, <c>text_model.final_layer_norm</c>.
/// Returns the last hidden state [B, T, hidden] and the pooled output [B, hidden] at the end-of-text token.
/// </summary>
public sealed class CLIPTextModel : Module<Tensor, (Tensor LastHiddenState, Tensor PooledOutput)>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly CLIPTextTransformer text_model;
#pragma warning restore IDE1006

    public CLIPTextModel(ClipTextConfig config) : base(nameof(CLIPTextModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        text_model = new CLIPTextTransformer(config);
        RegisterComponents();
    }

    public ClipTextConfig Config { get; }

    /// <summary>
    /// Checkpoint keys that are buffers, not parameters, in older transformers versions
    /// (<c>text_model.embeddings.position_ids</c>); a loader may skip them.
    /// </summary>
    public static IReadOnlyList<string> IgnorableKeys { get; } = ["text_model.embeddings.position_ids"];

    /// <param name="inputIds">[B, T] token ids (int64), T &lt;= max_position_embeddings.</param>
    public override (Tensor LastHiddenState, Tensor PooledOutput) forward(Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        var (last, pooled) = text_model.forward(inputIds);
        return (last.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }
}

/// <summary>transformers' CLIPTextTransformer: embeddings, encoder, final layer norm, pooling.</summary>
public sealed class CLIPTextTransformer : Module<Tensor, (Tensor, Tensor)>
{
#pragma warning disable IDE1006
    private readonly CLIPTextEmbeddings embeddings;
    private readonly CLIPEncoder encoder;
    private readonly LayerNorm final_layer_norm;
#pragma warning restore IDE1006
    private readonly ClipTextConfig _config;

    public CLIPTextTransformer(ClipTextConfig config) : base(nameof(CLIPTextTransformer))
    {
        _config = config;
        embeddings = new CLIPTextEmbeddings(config);
        encoder = new CLIPEncoder(config);
        final_layer_norm = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    public override (Tensor, Tensor) forward(Tensor inputIds)
    {
        var (last, pooled, _) = Run(inputIds, keepHiddenStates: false);
        return (last, pooled);
    }

    /// <summary>
    /// <see cref="forward"/> plus transformers' <c>output_hidden_states=True</c> tuple: N + 1 tensors [B, T, hidden], the
    /// embeddings then each encoder layer's output, none with final_layer_norm (so <c>HiddenStates[^1]</c> is the last
    /// layer before the norm and <c>HiddenStates[^2]</c> the penultimate layer, as SD3 and SDXL take it).
    /// </summary>
    public (Tensor LastHiddenState, Tensor PooledOutput, Tensor[] HiddenStates) ForwardWithHiddenStates(Tensor inputIds)
    {
        var (last, pooled, hidden) = Run(inputIds, keepHiddenStates: true);
        return (last, pooled, hidden!);
    }

    private (Tensor, Tensor, Tensor[]?) Run(Tensor inputIds, bool keepHiddenStates)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input_ids must be [B, T], got [{string.Join(", ", inputIds.shape)}]", nameof(inputIds));
        long b = inputIds.shape[0], t = inputIds.shape[1];
        if (t > _config.MaxPositionEmbeddings)
            throw new ArgumentException($"input_ids has {t} tokens but max_position_embeddings is {_config.MaxPositionEmbeddings}", nameof(inputIds));
        var ids = inputIds.to(ScalarType.Int64);
        var h = embeddings.forward(ids);                                      // [B, T, hidden]
        Tensor[]? hidden = null;
        if (keepHiddenStates)
        {
            hidden = encoder.ForwardWithHiddenStates(h);                     // N + 1 x [B, T, hidden]
            h = hidden[^1];
        }
        else
        {
            h = encoder.forward(h);
        }
        h = final_layer_norm.forward(h);
        // Pool at the end-of-text token: argmax(ids) under the legacy eos_token_id == 2 rule, else the first eos position.
        var eot = _config.LegacyArgmaxPooling
            ? ids.argmax(-1)
            : ids.eq(_config.EosTokenId).to(ScalarType.Int32).argmax(-1);    // [B]
        var pooled = h[torch.arange(b, device: h.device), eot];               // [B, hidden]
        return (h, pooled, hidden);
    }
}

/// <summary>transformers' CLIPTextEmbeddings: token + learned absolute position embeddings.</summary>
public sealed class CLIPTextEmbeddings : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Embedding token_embedding;
    private readonly Embedding position_embedding;
#pragma warning restore IDE1006

    public CLIPTextEmbeddings(ClipTextConfig config) : base(nameof(CLIPTextEmbeddings))
    {
        token_embedding = Embedding(config.VocabSize, config.HiddenSize);
        position_embedding = Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids)
    {
        var positions = torch.arange(ids.shape[1], dtype: ScalarType.Int64, device: ids.device).unsqueeze(0); // [1, T]
        return token_embedding.forward(ids).add(position_embedding.forward(positions));
    }
}

/// <summary>transformers' CLIPEncoder: <c>layers.N</c>.</summary>
public sealed class CLIPEncoder : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<CLIPEncoderLayer> layers;
#pragma warning restore IDE1006

    public CLIPEncoder(ClipTextConfig config) : base(nameof(CLIPEncoder))
    {
        layers = new ModuleList<CLIPEncoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new CLIPEncoderLayer(config)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        foreach (var layer in layers) x = layer.forward(x);
        return x;
    }

    /// <summary>transformers' encoder_states: the input, then every layer's output (N + 1 tensors).</summary>
    public Tensor[] ForwardWithHiddenStates(Tensor x)
    {
        var states = new Tensor[layers.Count + 1];
        states[0] = x;
        for (int i = 0; i < layers.Count; i++) states[i + 1] = layers[i].forward(states[i]);
        return states;
    }
}

/// <summary>transformers' CLIPEncoderLayer: x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x)).</summary>
public sealed class CLIPEncoderLayer : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly CLIPAttention self_attn;
    private readonly LayerNorm layer_norm1;
    private readonly CLIPMLP mlp;
    private readonly LayerNorm layer_norm2;
#pragma warning restore IDE1006

    public CLIPEncoderLayer(ClipTextConfig config) : base(nameof(CLIPEncoderLayer))
    {
        self_attn = new CLIPAttention(config);
        layer_norm1 = LayerNorm(config.HiddenSize, config.LayerNormEps);
        mlp = new CLIPMLP(config);
        layer_norm2 = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.add(self_attn.forward(layer_norm1.forward(x)));
        h = h.add(mlp.forward(layer_norm2.forward(h)));
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>transformers' CLIPAttention with the causal mask (q/k/v/out_proj with biases).</summary>
public sealed class CLIPAttention : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear k_proj;
    private readonly Linear v_proj;
    private readonly Linear q_proj;
    private readonly Linear out_proj;
#pragma warning restore IDE1006
    private readonly int _heads;
    private readonly int _headDim;

    public CLIPAttention(ClipTextConfig config) : base(nameof(CLIPAttention))
    {
        _heads = config.NumAttentionHeads;
        _headDim = config.HeadDim;
        k_proj = Linear(config.HiddenSize, config.HiddenSize);
        v_proj = Linear(config.HiddenSize, config.HiddenSize);
        q_proj = Linear(config.HiddenSize, config.HiddenSize);
        out_proj = Linear(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var q = q_proj.forward(x).view(b, t, _heads, _headDim).transpose(1, 2); // [B, heads, T, d]
        var k = k_proj.forward(x).view(b, t, _heads, _headDim).transpose(1, 2); // [B, heads, T, d]
        var v = v_proj.forward(x).view(b, t, _heads, _headDim).transpose(1, 2); // [B, heads, T, d]
        var o = functional.scaled_dot_product_attention(q, k, v, is_casual: true); // [B, heads, T, d]
        return out_proj.forward(o.transpose(1, 2).reshape(b, t, _heads * _headDim));
    }
}

/// <summary>transformers' CLIPMLP: fc1, quick_gelu (SD1) or gelu (SD2/OpenCLIP), fc2.</summary>
public sealed class CLIPMLP : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear fc1;
    private readonly Linear fc2;
#pragma warning restore IDE1006
    private readonly bool _quickGelu;

    public CLIPMLP(ClipTextConfig config) : base(nameof(CLIPMLP))
    {
        fc1 = Linear(config.HiddenSize, config.IntermediateSize);
        fc2 = Linear(config.IntermediateSize, config.HiddenSize);
        _quickGelu = config.HiddenAct == "quick_gelu";
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var h = fc1.forward(x);
        h = _quickGelu ? h.mul(torch.sigmoid(h.mul(1.702))) : functional.gelu(h); // quick_gelu: x * sigmoid(1.702 x)
        return fc2.forward(h);
    }
}

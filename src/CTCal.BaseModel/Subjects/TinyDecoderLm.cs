using CTCal.Core.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.BaseModel.Subjects;

/// <summary>
/// The tiny decoder-only transformer of <see cref="TinyDecoderConfig"/> in TorchSharp, with the weight names the ONNX graph
/// (<c>CTCal.Export.Decoder.TinyDecoderGraph</c>) reads: pre-LayerNorm blocks, learned token and position embeddings,
/// exact GELU MLP, logits tied to the token embedding.
/// </summary>
public sealed class TinyDecoderLm : Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // state-dict names
    private readonly Embedding tok_emb;
    private readonly Embedding pos_emb;
    private readonly ModuleList<DecoderBlock> layers;
    private readonly LayerNorm ln_f;
#pragma warning restore IDE1006

    /// <summary>Builds the model with PyTorch's default initialisation (seed torch first for determinism).</summary>
    public TinyDecoderLm(TinyDecoderConfig config) : base(nameof(TinyDecoderLm))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        tok_emb = Embedding(config.VocabSize, config.Hidden);
        pos_emb = Embedding(config.ContextLength, config.Hidden);
        layers = new ModuleList<DecoderBlock>(Enumerable.Range(0, config.Layers).Select(_ => new DecoderBlock(config)).ToArray());
        ln_f = LayerNorm(config.Hidden, 1e-5);
        RegisterComponents();
        using (no_grad())
        {
            init.normal_(tok_emb.weight!, 0, 0.05);
            init.normal_(pos_emb.weight!, 0, 0.02);
        }
    }

    /// <summary>The sizes.</summary>
    public TinyDecoderConfig Config { get; }

    /// <summary>Logits [B, S, V] for right-padded <paramref name="ids"/> [B, S] (int64) whose real tokens <paramref name="valid"/> marks (bool [B, S]).</summary>
    public override Tensor forward(Tensor ids, Tensor valid)
    {
        using var scope = NewDisposeScope();
        return Logits(Hidden(ids, valid)).MoveToOuterDisposeScope();
    }

    /// <summary>The tied output projection of hidden states [..., D] to logits [..., V].</summary>
    public Tensor Logits(Tensor hidden) => matmul(hidden, tok_emb.weight!.t());

    /// <summary>The final hidden states [B, S, D] (after <c>ln_f</c>), before the output projection.</summary>
    public Tensor Hidden(Tensor ids, Tensor valid)
    {
        using var scope = NewDisposeScope();
        long s = ids.shape[1];
        var positions = arange(s, dtype: ScalarType.Int64, device: ids.device).unsqueeze(0);
        var x = tok_emb.forward(ids) + pos_emb.forward(positions);
        var causal = ones(s, s, dtype: ScalarType.Bool, device: ids.device).tril();          // [S, S]
        var visible = causal.unsqueeze(0).unsqueeze(0).logical_and(valid.unsqueeze(1).unsqueeze(2)); // [B, 1, S, S]
        var bias = zeros(visible.shape, device: ids.device).masked_fill(visible.logical_not(), -1e9f);
        foreach (var layer in layers) x = layer.forward(x, bias);
        return ln_f.forward(x).MoveToOuterDisposeScope();
    }

    /// <summary>One pre-LayerNorm block.</summary>
    private sealed class DecoderBlock : Module<Tensor, Tensor, Tensor>
    {
#pragma warning disable IDE1006
        private readonly LayerNorm ln1;
        private readonly SelfAttention attn;
        private readonly LayerNorm ln2;
        private readonly Mlp mlp;
#pragma warning restore IDE1006

        public DecoderBlock(TinyDecoderConfig config) : base(nameof(DecoderBlock))
        {
            ln1 = LayerNorm(config.Hidden, 1e-5);
            attn = new SelfAttention(config);
            ln2 = LayerNorm(config.Hidden, 1e-5);
            mlp = new Mlp(config);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x, Tensor bias)
        {
            using var scope = NewDisposeScope();
            x = x + attn.forward(ln1.forward(x), bias);
            return (x + mlp.forward(ln2.forward(x))).MoveToOuterDisposeScope();
        }
    }

    private sealed class SelfAttention : Module<Tensor, Tensor, Tensor>
    {
#pragma warning disable IDE1006
        private readonly Linear q, k, v, o;
#pragma warning restore IDE1006
        private readonly int _heads, _headSize;

        public SelfAttention(TinyDecoderConfig config) : base(nameof(SelfAttention))
        {
            q = Linear(config.Hidden, config.Hidden);
            k = Linear(config.Hidden, config.Hidden);
            v = Linear(config.Hidden, config.Hidden);
            o = Linear(config.Hidden, config.Hidden);
            _heads = config.Heads;
            _headSize = config.HeadSize;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x, Tensor bias)
        {
            using var scope = NewDisposeScope();
            long b = x.shape[0], s = x.shape[1];
            Tensor Heads(Tensor t) => t.view(b, s, _heads, _headSize).transpose(1, 2); // [B, h, S, hs]
            var scores = matmul(Heads(q.forward(x)), Heads(k.forward(x)).transpose(2, 3)) * (1.0 / Math.Sqrt(_headSize)) + bias;
            var outh = matmul(functional.softmax(scores, -1), Heads(v.forward(x))); // [B, h, S, hs]
            return o.forward(outh.transpose(1, 2).reshape(b, s, _heads * _headSize)).MoveToOuterDisposeScope();
        }
    }

    private sealed class Mlp : Module<Tensor, Tensor>
    {
#pragma warning disable IDE1006
        private readonly Linear fc1, fc2;
#pragma warning restore IDE1006

        public Mlp(TinyDecoderConfig config) : base(nameof(Mlp))
        {
            fc1 = Linear(config.Hidden, config.FeedForward);
            fc2 = Linear(config.FeedForward, config.Hidden);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return fc2.forward(functional.gelu(fc1.forward(x))).MoveToOuterDisposeScope();
        }
    }
}

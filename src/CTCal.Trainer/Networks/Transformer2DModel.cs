using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.transformers.transformer_2d.Transformer2DModel (continuous input, SD 1.x conv / SD 2.x linear projections).
/// <summary>
/// GroupNorm, <c>proj_in</c> (1x1 conv, or Linear when <c>use_linear_projection</c>), <c>transformer_blocks.N</c>,
/// <c>proj_out</c>, plus the input as residual.
/// </summary>
public sealed class Transformer2DModel : Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly GroupNorm norm;
    private readonly Module<Tensor, Tensor> proj_in;
    private readonly ModuleList<BasicTransformerBlock> transformer_blocks;
    private readonly Module<Tensor, Tensor> proj_out;
#pragma warning restore IDE1006
    private readonly bool _linear;
    private readonly int _inner;

    public Transformer2DModel(int heads, int headDim, int inChannels, int layers, int crossAttentionDim, int groups,
        bool useLinearProjection, bool upcastAttention) : base(nameof(Transformer2DModel))
    {
        _inner = heads * headDim;
        _linear = useLinearProjection;
        norm = Layers.GroupNorm(groups, inChannels, eps: 1e-6);
        proj_in = useLinearProjection ? Linear(inChannels, _inner) : Conv2d(inChannels, _inner, 1);
        transformer_blocks = new ModuleList<BasicTransformerBlock>(Enumerable.Range(0, layers)
            .Select(_ => new BasicTransformerBlock(_inner, heads, headDim, crossAttentionDim, upcastAttention)).ToArray());
        proj_out = useLinearProjection ? Linear(_inner, inChannels) : Conv2d(_inner, inChannels, 1);
        RegisterComponents();
    }

    /// <param name="x">[B, C, H, W]</param>
    /// <param name="context">[B, tokens, crossAttentionDim]</param>
    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], hgt = x.shape[2], wid = x.shape[3];
        var h = norm.forward(x);
        if (_linear)
        {
            h = h.permute(0, 2, 3, 1).reshape(b, hgt * wid, c); // [B, HW, C]
            h = proj_in.forward(h);                              // [B, HW, inner]
        }
        else
        {
            h = proj_in.forward(h);                                      // [B, inner, H, W]
            h = h.permute(0, 2, 3, 1).reshape(b, hgt * wid, _inner);     // [B, HW, inner]
        }
        foreach (var block in transformer_blocks) h = block.forward(h, context);
        if (_linear)
        {
            h = proj_out.forward(h);                                          // [B, HW, C]
            h = h.reshape(b, hgt, wid, c).permute(0, 3, 1, 2).contiguous(); // [B, C, H, W]
        }
        else
        {
            h = h.reshape(b, hgt, wid, _inner).permute(0, 3, 1, 2).contiguous(); // [B, inner, H, W]
            h = proj_out.forward(h);                                              // [B, C, H, W]
        }
        return h.add(x).MoveToOuterDisposeScope();
    }
}

// diffusers.models.attention.BasicTransformerBlock (layer_norm, self-attention, cross-attention, GEGLU feed-forward).
/// <summary>norm1/attn1, norm2/attn2 (over the text states), norm3/ff, each with a residual.</summary>
public sealed class BasicTransformerBlock : Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly LayerNorm norm1;
    private readonly Attention attn1;
    private readonly LayerNorm norm2;
    private readonly Attention attn2;
    private readonly LayerNorm norm3;
    private readonly FeedForward ff;
#pragma warning restore IDE1006

    public BasicTransformerBlock(int dim, int heads, int headDim, int crossAttentionDim, bool upcastAttention)
        : base(nameof(BasicTransformerBlock))
    {
        norm1 = LayerNorm(dim);
        attn1 = new Attention(dim, null, heads, headDim, upcastAttention);
        norm2 = LayerNorm(dim);
        attn2 = new Attention(dim, crossAttentionDim, heads, headDim, upcastAttention);
        norm3 = LayerNorm(dim);
        ff = new FeedForward(dim, dim * 4);
        RegisterComponents();
    }

    /// <param name="x">[B, HW, dim]</param>
    /// <param name="context">[B, tokens, crossAttentionDim]</param>
    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = NewDisposeScope();
        var h = attn1.forward(norm1.forward(x), null).add(x);
        h = attn2.forward(norm2.forward(h), context).add(h);
        h = ff.forward(norm3.forward(h)).add(h);
        return h.MoveToOuterDisposeScope();
    }
}

// diffusers.models.attention.FeedForward with activation_fn="geglu": net.0 = GEGLU, net.1 = Dropout, net.2 = Linear.
/// <summary>GEGLU feed-forward: <c>net.0.proj</c> (dim -> 2 x inner), hidden * gelu(gate), <c>net.2</c> (inner -> dim).</summary>
public sealed class FeedForward : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<Module<Tensor, Tensor>> net;
#pragma warning restore IDE1006

    public FeedForward(int dim, int inner) : base(nameof(FeedForward))
    {
        net = new ModuleList<Module<Tensor, Tensor>>(new GEGLU(dim, inner), Dropout(0.0), Linear(inner, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => net[2].forward(net[0].forward(x));
}

// diffusers.models.activations.GEGLU (Shazeer 2020, "GLU Variants Improve Transformer").
public sealed class GEGLU : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear proj;
#pragma warning restore IDE1006

    public GEGLU(int dimIn, int dimOut) : base(nameof(GEGLU))
    {
        proj = Linear(dimIn, dimOut * 2);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var parts = proj.forward(x).chunk(2, -1); // hidden, gate: [..., dimOut] each
        var gate = parts[1];
        // gelu in fp32 for half inputs, as diffusers does on CPU/MPS; exact (erf) gelu.
        var g = gate.dtype == ScalarType.Float32 ? functional.gelu(gate) : functional.gelu(gate.to(ScalarType.Float32)).to(gate.dtype);
        return parts[0].mul(g).MoveToOuterDisposeScope();
    }
}

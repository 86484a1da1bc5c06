using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.attention.AdaLayerNormZero (norm_type "layer_norm", no class embedding), as JointTransformerBlock uses it.
/// <summary>
/// adaLN-Zero (DiT): <c>linear</c>(SiLU(emb)) gives shift/scale/gate for the attention and shift/scale/gate for the MLP;
/// returns the modulated LayerNorm (no affine, eps 1e-6) of x and the other four.
/// </summary>
public sealed class AdaLayerNormZero : Module<Tensor, Tensor, (Tensor Normed, Tensor GateMsa, Tensor ShiftMlp, Tensor ScaleMlp, Tensor GateMlp)>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly Linear linear;
    private readonly LayerNorm norm;
#pragma warning restore IDE1006

    public AdaLayerNormZero(int embeddingDim) : base(nameof(AdaLayerNormZero))
    {
        linear = Linear(embeddingDim, 6 * embeddingDim);
        norm = LayerNorm(embeddingDim, eps: 1e-6, elementwise_affine: false);
        RegisterComponents();
    }

    /// <param name="x">[B, N, dim]</param>
    /// <param name="emb">[B, dim] conditioning.</param>
    /// <returns>normed [B, N, dim]; gate_msa, shift_mlp, scale_mlp, gate_mlp [B, dim] each.</returns>
    public override (Tensor Normed, Tensor GateMsa, Tensor ShiftMlp, Tensor ScaleMlp, Tensor GateMlp) forward(Tensor x, Tensor emb)
    {
        using var scope = NewDisposeScope();
        var chunks = linear.forward(functional.silu(emb)).chunk(6, 1); // 6 x [B, dim]: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
        var normed = norm.forward(x).mul(chunks[1].unsqueeze(1).add(1)).add(chunks[0].unsqueeze(1)); // [B, N, dim]
        return (normed.MoveToOuterDisposeScope(), chunks[2].MoveToOuterDisposeScope(), chunks[3].MoveToOuterDisposeScope(),
            chunks[4].MoveToOuterDisposeScope(), chunks[5].MoveToOuterDisposeScope());
    }
}

// diffusers.models.normalization.AdaLayerNormContinuous (norm_type "layer_norm", elementwise_affine=False, eps 1e-6).
/// <summary>
/// <c>linear</c>(SiLU(cond)) gives scale then shift (that order, unlike <see cref="AdaLayerNormZero"/>); returns
/// LayerNorm(x) * (1 + scale) + shift. SD3 uses it for <c>norm_out</c> and for the text stream of the last block.
/// </summary>
public sealed class AdaLayerNormContinuous : Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear linear;
    private readonly LayerNorm norm;
#pragma warning restore IDE1006

    public AdaLayerNormContinuous(int embeddingDim, int conditioningEmbeddingDim) : base(nameof(AdaLayerNormContinuous))
    {
        linear = Linear(conditioningEmbeddingDim, 2 * embeddingDim);
        norm = LayerNorm(embeddingDim, eps: 1e-6, elementwise_affine: false);
        RegisterComponents();
    }

    /// <param name="x">[B, N, dim]</param>
    /// <param name="conditioning">[B, conditioningEmbeddingDim]</param>
    /// <returns>[B, N, dim]</returns>
    public override Tensor forward(Tensor x, Tensor conditioning)
    {
        using var scope = NewDisposeScope();
        var chunks = linear.forward(functional.silu(conditioning).to(x.dtype)).chunk(2, 1); // scale, shift: [B, dim] each
        var y = norm.forward(x).mul(chunks[0].unsqueeze(1).add(1)).add(chunks[1].unsqueeze(1)); // [B, N, dim]
        return y.MoveToOuterDisposeScope();
    }
}

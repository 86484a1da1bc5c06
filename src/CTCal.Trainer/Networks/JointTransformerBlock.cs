using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.attention.JointTransformerBlock (diffusers 0.29, MMDiT: Esser et al. 2024, "Scaling Rectified Flow Transformers").
/// <summary>
/// One MMDiT block: each stream is modulated by the conditioning vector (<c>norm1</c> / <c>norm1_context</c>), both attend
/// jointly (<c>attn</c>), then each stream has its own gated feed-forward (<c>ff</c> / <c>ff_context</c>). The last block is
/// context_pre_only: its text stream is normalised with <see cref="AdaLayerNormContinuous"/>, feeds the attention as keys
/// and values, and is not updated (no <c>ff_context</c>, no text output).
/// </summary>
public sealed class JointTransformerBlock : Module<Tensor, Tensor, Tensor, (Tensor Image, Tensor? Text)>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly AdaLayerNormZero norm1;
    private readonly Module norm1_context;
    private readonly JointAttention attn;
    private readonly LayerNorm norm2;
    private readonly GeluFeedForward ff;
    private readonly LayerNorm? norm2_context;
    private readonly GeluFeedForward? ff_context;
#pragma warning restore IDE1006

    public JointTransformerBlock(int dim, int heads, int headDim, bool contextPreOnly) : base(nameof(JointTransformerBlock))
    {
        ContextPreOnly = contextPreOnly;
        norm1 = new AdaLayerNormZero(dim);
        norm1_context = contextPreOnly ? new AdaLayerNormContinuous(dim, dim) : new AdaLayerNormZero(dim);
        attn = new JointAttention(dim, heads, headDim, contextPreOnly);
        norm2 = LayerNorm(dim, eps: 1e-6, elementwise_affine: false);
        ff = new GeluFeedForward(dim);
        if (!contextPreOnly)
        {
            norm2_context = LayerNorm(dim, eps: 1e-6, elementwise_affine: false);
            ff_context = new GeluFeedForward(dim);
        }
        RegisterComponents();
    }

    public bool ContextPreOnly { get; }

    /// <param name="image">[B, N, dim] image tokens.</param>
    /// <param name="text">[B, L, dim] text tokens.</param>
    /// <param name="temb">[B, dim] conditioning (timestep + pooled text).</param>
    /// <returns>image [B, N, dim]; text [B, L, dim], or null after the context_pre_only block.</returns>
    public override (Tensor Image, Tensor? Text) forward(Tensor image, Tensor text, Tensor temb)
    {
        using var scope = NewDisposeScope();
        var (normImage, gateMsa, shiftMlp, scaleMlp, gateMlp) = norm1.forward(image, temb); // [B, N, dim]; [B, dim] x 4

        if (ContextPreOnly)
        {
            var normText = ((AdaLayerNormContinuous)norm1_context).forward(text, temb); // [B, L, dim]
            var (attnImage, _) = attn.forward(normImage, normText);                     // [B, N, dim]
            var h = ImageTail(image, attnImage, gateMsa, shiftMlp, scaleMlp, gateMlp);
            return (h.MoveToOuterDisposeScope(), null);
        }

        var (normTextZ, cGateMsa, cShiftMlp, cScaleMlp, cGateMlp) = ((AdaLayerNormZero)norm1_context).forward(text, temb);
        var (aImage, aText) = attn.forward(normImage, normTextZ); // [B, N, dim], [B, L, dim]
        var hImage = ImageTail(image, aImage, gateMsa, shiftMlp, scaleMlp, gateMlp);

        var c = text.add(cGateMsa.unsqueeze(1).mul(aText!));                                  // [B, L, dim]
        var cNorm = norm2_context!.forward(c).mul(cScaleMlp.unsqueeze(1).add(1)).add(cShiftMlp.unsqueeze(1)); // [B, L, dim]
        c = c.add(cGateMlp.unsqueeze(1).mul(ff_context!.forward(cNorm)));                      // [B, L, dim]
        return (hImage.MoveToOuterDisposeScope(), c.MoveToOuterDisposeScope());
    }

    /// <summary>Gated attention residual, then the modulated, gated feed-forward residual of the image stream.</summary>
    private Tensor ImageTail(Tensor image, Tensor attnOut, Tensor gateMsa, Tensor shiftMlp, Tensor scaleMlp, Tensor gateMlp)
    {
        var h = image.add(gateMsa.unsqueeze(1).mul(attnOut));                                                  // [B, N, dim]
        var hNorm = norm2.forward(h).mul(scaleMlp.unsqueeze(1).add(1)).add(shiftMlp.unsqueeze(1));            // [B, N, dim]
        return h.add(gateMlp.unsqueeze(1).mul(ff.forward(hNorm)));                                            // [B, N, dim]
    }
}

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.attention_processor.Attention with AttnProcessor2_0 (fused SDPA) / AttnProcessor (explicit probabilities).
/// <summary>
/// Multi-head attention of the UNet's transformer blocks: <c>to_q</c>, <c>to_k</c>, <c>to_v</c> (no bias) and
/// <c>to_out.0</c>. Self-attention when no context is given (attn1), cross-attention over the text states otherwise (attn2).
/// </summary>
public sealed class Attention : Module<Tensor, Tensor?, Tensor>, ICapturableAttention
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly ModuleList<Module<Tensor, Tensor>> to_out;
#pragma warning restore IDE1006

    private readonly int _heads;
    private readonly int _headDim;
    private readonly bool _upcast;
    private AttentionCaptureSlot? _slot;

    public Attention(int queryDim, int? crossAttentionDim, int heads, int headDim, bool upcastAttention, bool bias = false)
        : base(nameof(Attention))
    {
        int inner = heads * headDim;
        int contextDim = crossAttentionDim ?? queryDim;
        _heads = heads;
        _headDim = headDim;
        _upcast = upcastAttention;
        to_q = Linear(queryDim, inner, hasBias: bias);
        to_k = Linear(contextDim, inner, hasBias: bias);
        to_v = Linear(contextDim, inner, hasBias: bias);
        to_out = new ModuleList<Module<Tensor, Tensor>>(Linear(inner, queryDim, hasBias: true));
        RegisterComponents();
    }

    /// <summary>Module path inside its model (set by the owning model), used to match an <see cref="AttentionCapture"/>.</summary>
    public string Path { get; private set; } = "";

    void ICapturableAttention.Bind(string path, AttentionCaptureSlot slot)
    {
        Path = path;
        _slot = slot;
    }

    /// <param name="hiddenStates">[B, N, queryDim]</param>
    /// <param name="context">[B, M, crossAttentionDim] for cross-attention; null for self-attention.</param>
    public override Tensor forward(Tensor hiddenStates, Tensor? context)
    {
        var ctx = context ?? hiddenStates;
        long b = hiddenStates.shape[0], n = hiddenStates.shape[1], m = ctx.shape[1];
        var q = to_q.forward(hiddenStates).view(b, n, _heads, _headDim).transpose(1, 2); // [B, heads, N, d]
        var k = to_k.forward(ctx).view(b, m, _heads, _headDim).transpose(1, 2);          // [B, heads, M, d]
        var v = to_v.forward(ctx).view(b, m, _heads, _headDim).transpose(1, 2);          // [B, heads, M, d]

        var capture = _slot?.Current;
        bool record = capture is not null && capture.Wants(Path);
        Tensor o;
        if (record || (_upcast && q.dtype != ScalarType.Float32))
        {
            var probs = AttentionMath.Probabilities(q, k, _headDim, _upcast); // [B, heads, N, M]
            if (record) capture!.Record(Path, probs);
            o = probs.to(v.dtype).matmul(v); // [B, heads, N, d]
        }
        else
        {
            o = functional.scaled_dot_product_attention(q, k, v); // [B, heads, N, d]
        }
        o = o.transpose(1, 2).reshape(b, n, _heads * _headDim); // [B, N, heads*d]
        return to_out[0].forward(o);
    }
}

/// <summary>Explicit scaled dot-product attention probabilities, shared by the UNet, VAE and CLIP attention.</summary>
internal static class AttentionMath
{
    /// <summary>softmax(Q K^T / sqrt(d)) over the last axis; computed in fp32 when <paramref name="upcast"/>.</summary>
    /// <param name="q">[..., N, d]</param>
    /// <param name="k">[..., M, d]</param>
    /// <returns>[..., N, M]</returns>
    public static Tensor Probabilities(Tensor q, Tensor k, int headDim, bool upcast, Tensor? additiveMask = null)
    {
        if (upcast && q.dtype != ScalarType.Float32)
        {
            q = q.to(ScalarType.Float32);
            k = k.to(ScalarType.Float32);
        }
        var scores = q.matmul(k.transpose(-1, -2)).mul(1.0 / Math.Sqrt(headDim)); // [..., N, M]
        if (additiveMask is not null) scores = scores.add(additiveMask);
        return functional.softmax(scores, -1);
    }
}

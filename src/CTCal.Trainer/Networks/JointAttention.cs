using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.attention_processor.Attention (added_kv_proj_dim, context_pre_only) with JointAttnProcessor2_0, diffusers 0.29.
/// <summary>
/// MMDiT joint attention: image tokens (<c>to_q</c>/<c>to_k</c>/<c>to_v</c>) and text tokens
/// (<c>add_q_proj</c>/<c>add_k_proj</c>/<c>add_v_proj</c>) are concatenated, image first then text as diffusers 0.29 does,
/// attend jointly, and are split again: <c>to_out.0</c> projects the image part, <c>to_add_out</c> the text part (absent
/// in the last block, whose text output is discarded: context_pre_only).
/// </summary>
/// <remarks>
/// A capture records, for this layer's path, the image-query x text-key block of the softmax over all image + text keys:
/// [B, heads, image tokens, text tokens]. Its rows do not sum to one (the rest of each row's mass is on image keys); it is
/// not renormalised here. With a capture the image queries use explicit probabilities (fp32 when the inputs are half
/// precision) and the text queries the fused kernel; without one everything uses the fused kernel. A capture with
/// <see cref="AttentionCapture.NormaliseOverText"/> records softmax(Q_image K_textᵀ / sqrt(d)) instead (fp32 when upcast),
/// the block renormalised over the text keys, and the layer's output keeps the fused kernel.
/// </remarks>
public sealed class JointAttention : Module<Tensor, Tensor, (Tensor Image, Tensor? Text)>, ICapturableAttention
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly Linear add_q_proj;
    private readonly Linear add_k_proj;
    private readonly Linear add_v_proj;
    private readonly ModuleList<Module<Tensor, Tensor>> to_out;
    private readonly Linear? to_add_out;
#pragma warning restore IDE1006

    private readonly int _heads;
    private readonly int _headDim;
    private AttentionCaptureSlot? _slot;

    public JointAttention(int dim, int heads, int headDim, bool contextPreOnly) : base(nameof(JointAttention))
    {
        int inner = heads * headDim;
        _heads = heads;
        _headDim = headDim;
        ContextPreOnly = contextPreOnly;
        to_q = Linear(dim, inner);
        to_k = Linear(dim, inner);
        to_v = Linear(dim, inner);
        add_q_proj = Linear(dim, inner);
        add_k_proj = Linear(dim, inner);
        add_v_proj = Linear(dim, inner);
        to_out = new ModuleList<Module<Tensor, Tensor>>(Linear(inner, dim));
        to_add_out = contextPreOnly ? null : Linear(inner, dim);
        RegisterComponents();
    }

    /// <summary>The last block's attention: text queries are not computed and there is no <c>to_add_out</c>.</summary>
    public bool ContextPreOnly { get; }

    /// <summary>Module path inside its model (set by the owning model), used to match an <see cref="AttentionCapture"/>.</summary>
    public string Path { get; private set; } = "";

    void ICapturableAttention.Bind(string path, AttentionCaptureSlot slot)
    {
        Path = path;
        _slot = slot;
    }

    /// <param name="image">[B, N, dim] normalised image tokens.</param>
    /// <param name="text">[B, L, dim] normalised text tokens.</param>
    /// <returns>image output [B, N, dim]; text output [B, L, dim], or null when <see cref="ContextPreOnly"/>.</returns>
    public override (Tensor Image, Tensor? Text) forward(Tensor image, Tensor text)
    {
        using var scope = NewDisposeScope();
        long b = image.shape[0], n = image.shape[1], l = text.shape[1];
        Tensor Heads(Tensor x, long tokens) => x.view(b, tokens, _heads, _headDim).transpose(1, 2); // [B, tokens, inner] -> [B, heads, tokens, d]

        var qImage = Heads(to_q.forward(image), n);                                          // [B, heads, N, d]
        var k = torch.cat([Heads(to_k.forward(image), n), Heads(add_k_proj.forward(text), l)], 2); // [B, heads, N+L, d]: image keys, then text keys
        var v = torch.cat([Heads(to_v.forward(image), n), Heads(add_v_proj.forward(text), l)], 2); // [B, heads, N+L, d]

        var capture = _slot?.Current;
        bool record = capture is not null && capture.Wants(Path);
        if (record && capture!.NormaliseOverText)
        {
            // Softmax over the text keys only: the joint block renormalised over them, at N x L scores.
            capture.Record(Path, AttentionMath.Probabilities(qImage, k.narrow(2, n, l), _headDim, upcast: true).contiguous()); // [B, heads, N, L]
            record = false;                                                                     // the output takes the fused path below
        }
        Tensor oImage;
        Tensor? oText = null;
        if (record)
        {
            // Image queries explicitly (their probabilities are the capture); text queries, which the capture does not
            // need, through the fused kernel. Per-query softmax rows make this identical to one joint pass.
            var probs = AttentionMath.Probabilities(qImage, k, _headDim, upcast: true);         // [B, heads, N, N+L]
            capture!.Record(Path, probs.narrow(3, n, l).contiguous());                          // [B, heads, N, L]: image queries x text keys
            oImage = probs.to(v.dtype).matmul(v);                                               // [B, heads, N, d]
            if (!ContextPreOnly) oText = functional.scaled_dot_product_attention(Heads(add_q_proj.forward(text), l), k, v); // [B, heads, L, d]
        }
        else if (ContextPreOnly)
        {
            // The last block discards the text output, so only the image queries attend.
            oImage = functional.scaled_dot_product_attention(qImage, k, v); // [B, heads, N, d]
        }
        else
        {
            var q = torch.cat([qImage, Heads(add_q_proj.forward(text), l)], 2); // [B, heads, N+L, d]
            var o = functional.scaled_dot_product_attention(q, k, v);            // [B, heads, N+L, d]
            oImage = o.narrow(2, 0, n);                                          // [B, heads, N, d]
            oText = o.narrow(2, n, l);                                           // [B, heads, L, d]
        }

        var imageOut = to_out[0].forward(oImage.transpose(1, 2).reshape(b, n, _heads * _headDim)); // [B, heads, N, d] -> [B, N, inner] -> [B, N, dim]
        if (ContextPreOnly) return (imageOut.MoveToOuterDisposeScope(), null);
        var textOut = to_add_out!.forward(oText!.transpose(1, 2).reshape(b, l, _heads * _headDim)); // [B, heads, L, d] -> [B, L, inner] -> [B, L, dim]
        return (imageOut.MoveToOuterDisposeScope(), textOut.MoveToOuterDisposeScope());
    }
}

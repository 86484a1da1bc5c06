using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// What the text encoder gives the denoiser: the hidden states [B, tokens, width] (the cross-attention context of a UNet,
/// SD3's joint text sequence) and, for models that take one, a pooled vector [B, width'] (SD3's <c>pooled_projections</c>).
/// The tensors belong to the caller's dispose scope.
/// </summary>
public sealed record TextConditioning(Tensor Hidden, Tensor? Pooled = null)
{
    /// <summary>Applies <paramref name="f"/> to every tensor (each has the batch on dim 0): selection, detach, device moves.</summary>
    public TextConditioning Map(Func<Tensor, Tensor> f) => new(f(Hidden), Pooled is null ? null : f(Pooled));

    /// <summary>Both tensors detached.</summary>
    public TextConditioning Detach() => Map(t => t.detach());

    /// <summary>A batch of one repeated <paramref name="count"/> times (expand on dim 0, no copy).</summary>
    public TextConditioning Expand(long count) =>
        Map(t => t.expand(new[] { count }.Concat(Enumerable.Repeat(-1L, (int)t.dim() - 1)).ToArray()));

    /// <summary>Rows <paramref name="rows"/> of each tensor (index_select on dim 0).</summary>
    public TextConditioning Select(Tensor rows) => Map(t => t.index_select(0, rows));

    /// <summary>The conditionings of several batches concatenated on dim 0 (all with or all without a pooled vector).</summary>
    public static TextConditioning Cat(IReadOnlyList<TextConditioning> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("nothing to concatenate", nameof(parts));
        bool pooled = parts[0].Pooled is not null;
        if (parts.Any(p => (p.Pooled is not null) != pooled)) throw new ArgumentException("some conditionings have a pooled vector and some not", nameof(parts));
        return new(cat(parts.Select(p => p.Hidden).ToArray(), 0), pooled ? cat(parts.Select(p => p.Pooled!).ToArray(), 0) : null);
    }
}

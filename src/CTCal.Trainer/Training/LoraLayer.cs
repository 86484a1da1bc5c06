using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// A LoRA adapter (Hu et al. 2021, W' = W + (alpha/r)·B·A) on one <see cref="Linear"/> of a model, kept folded into the
/// layer's weight so the model code needs no change: before a forward pass <see cref="Apply"/> writes W0 + s·B·A into the
/// layer's weight; after backward, <see cref="AccumulateFactorGradients"/> turns the weight's gradient G = dL/dW' into the
/// exact factor gradients dL/dA = s·Bᵀ·G and dL/dB = s·G·Aᵀ (through a surrogate backward, so they accumulate like ordinary
/// gradients) and clears G. The frozen base W0 is a private copy owned by this object.
/// <para>Dropout: because the adapter lives in the weight, dropout is applied to A's input features (columns) with one mask
/// per forward pass, scaled by 1/(1-p), instead of per token.</para>
/// A is initialised like peft (Kaiming-uniform, bound 1/sqrt(in)), B with zeros, so an attached adapter starts as the identity.
/// </summary>
public sealed class LoraLayer : IDisposable
{
    private readonly Tensor _base;
    private Tensor? _columnMask;

    internal LoraLayer(string path, Linear target, int rank, double scale, double dropout, Generator? generator)
    {
        Path = path;
        Target = target;
        Scale = scale;
        Dropout = dropout;
        var weight = target.weight ?? throw new ArgumentException($"{path}: linear layer has no weight");
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        using (no_grad())
        {
            _base = weight.detach().clone().DetachFromDisposeScope();
            double bound = 1.0 / Math.Sqrt(inFeatures);
            A = new Parameter(empty(rank, inFeatures, dtype: weight.dtype, device: weight.device).uniform_(-bound, bound, generator), requires_grad: true);
            B = new Parameter(zeros(outFeatures, rank, dtype: weight.dtype, device: weight.device), requires_grad: true);
        }
        A.DetachFromDisposeScope();
        B.DetachFromDisposeScope();
        weight.requires_grad = true; // its gradient is the source of the factor gradients
    }

    /// <summary>Module path of the adapted layer (<c>down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q</c>).</summary>
    public string Path { get; }
    public Linear Target { get; }
    /// <summary>lora_A: [rank, in].</summary>
    public Parameter A { get; }
    /// <summary>lora_B: [out, rank].</summary>
    public Parameter B { get; }
    public double Scale { get; }
    public double Dropout { get; }
    public int Rank => (int)A.shape[0];

    /// <summary>The frozen base weight W0.</summary>
    public Tensor BaseWeight => _base;

    /// <summary>Writes W0 + s·B·A into the layer (with a fresh input-feature dropout mask when <paramref name="training"/>).</summary>
    public void Apply(bool training, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        _columnMask?.Dispose();
        _columnMask = null;
        if (training && Dropout > 0)
        {
            var keep = rand(new long[] { 1, A.shape[1] }, dtype: A.dtype, device: A.device, generator: generator).ge(Dropout);
            _columnMask = keep.to(A.dtype).div(1 - Dropout).DetachFromDisposeScope();
        }
        var a = _columnMask is null ? (Tensor)A : A * _columnMask;
        // An explicit Scalar kept alive to the end of the call: an implicitly converted double is a temporary the GC may
        // finalize while libtorch still reads it (seen as "Expected false to be true ... toDouble" after ~100 steps).
        using var scale = Scale.ToScalar();
        Target.weight!.copy_(_base + B.matmul(a).mul(scale));
    }

    /// <summary>
    /// The surrogate whose gradient w.r.t. A and B equals the factor gradients implied by the layer's weight gradient, or null
    /// when the layer received no gradient. Clears the weight gradient.
    /// </summary>
    internal Tensor? FactorSurrogate()
    {
        var g = Target.weight!.grad;
        if (g is null) return null;
        var gradient = g.detach().clone();
        g.zero_();
        var a = _columnMask is null ? (Tensor)A : A * _columnMask;
        return B.matmul(a).mul(Scale).mul(gradient).sum();
    }

    /// <summary>
    /// The factor gradients (dL/dA, dL/dB) that <see cref="FactorSurrogate"/>'s backward would accumulate for the weight
    /// gradient <paramref name="weightGradient"/> (same dropout mask), computed directly without touching any .grad.
    /// </summary>
    internal (Tensor A, Tensor B) FactorGradients(Tensor weightGradient)
    {
        using var _ = no_grad();
        var a = _columnMask is null ? A.detach() : A.detach() * _columnMask;
        var gradB = weightGradient.matmul(a.t()).mul(Scale);
        var gradA = B.detach().t().matmul(weightGradient).mul(Scale);
        return (_columnMask is null ? gradA : gradA * _columnMask, gradB);
    }

    /// <summary>Accumulates dL/dA and dL/dB from the layer's weight gradient (see the class remarks) and clears that gradient.</summary>
    public void AccumulateFactorGradients()
    {
        using var scope = NewDisposeScope();
        FactorSurrogate()?.backward();
    }

    /// <summary>Writes the base weight back and stops collecting the weight's gradient.</summary>
    public void Restore()
    {
        using (no_grad()) Target.weight!.copy_(_base);
        Target.weight!.requires_grad = false;
    }

    public void Dispose()
    {
        _base.Dispose();
        _columnMask?.Dispose();
        A.Dispose();
        B.Dispose();
    }
}

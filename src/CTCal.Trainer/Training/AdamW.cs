using CTCal.Core.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter; the update of torch.optim.AdamW with amsgrad off), written out so that its whole state
/// (step count and both moments of every parameter) is plain tensors that checkpoints save to safetensors and restore exactly.
/// Owns its moment tensors; the parameters belong to the model.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly Parameter[] _parameters;
    private readonly Tensor[] _m;
    private readonly Tensor[] _v;

    public AdamW(IEnumerable<Parameter> parameters, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 1e-2)
    {
        _parameters = parameters.ToArray();
        if (_parameters.Length == 0) throw new ArgumentException("no trainable parameters", nameof(parameters));
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
        _m = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
        _v = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }

    /// <summary>Optimizer steps taken.</summary>
    public long Step { get; private set; }

    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>
    /// Drops every gradient (PyTorch's <c>zero_grad(set_to_none=True)</c>), so a parameter that gets no gradient in a step
    /// (the attention autoencoder on a caption without nouns) is skipped by <see cref="Update"/> whether or not it had a
    /// gradient earlier in this process. Zeroing in place instead would keep updating it from its moments after the
    /// first gradient, and a run resumed from a checkpoint (fresh process, no gradients yet) would diverge from an
    /// uninterrupted one.
    /// </summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters)
        {
            if (p.grad is null) continue;
            p.grad = null;
        }
    }

    /// <summary>One update at learning rate <paramref name="lr"/>; parameters without a gradient are left alone.</summary>
    public void Update(double lr)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Step++;
        double bias1 = 1 - Math.Pow(Beta1, Step);
        double bias2 = 1 - Math.Pow(Beta2, Step);
        for (int i = 0; i < _parameters.Length; i++)
        {
            if (i == _parameters.Length / 2) FaultPoints.Reached("train.mid-optimizer-step"); // some tensors updated, others not
            var p = _parameters[i];
            var g = p.grad;
            if (g is null) continue;
            p.mul_(1 - lr * WeightDecay);
            _m[i].mul_(Beta1).add_(g, alpha: 1 - Beta1);
            _v[i].mul_(Beta2).addcmul_(g, g, value: 1 - Beta2);
            var denominator = (_v[i] / bias2).sqrt_().add_(Epsilon);
            p.addcdiv_(_m[i], denominator, value: -lr / bias1);
        }
    }

    /// <summary>State tensors: <c>adamw.m.{i}</c>, <c>adamw.v.{i}</c> and <c>adamw.step</c> (views; do not dispose).</summary>
    public IEnumerable<(string Name, Tensor Value)> StateEntries()
    {
        for (int i = 0; i < _parameters.Length; i++)
        {
            yield return ($"adamw.m.{i}", _m[i]);
            yield return ($"adamw.v.{i}", _v[i]);
        }
        yield return ("adamw.step", tensor(new[] { Step }));
    }

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var _ = no_grad();
        for (int i = 0; i < _parameters.Length; i++)
        {
            foreach (var (name, target) in new[] { ($"adamw.m.{i}", _m[i]), ($"adamw.v.{i}", _v[i]) })
            {
                if (!state.TryGetValue(name, out var value)) throw new InvalidDataException($"{source}: missing optimizer state '{name}'");
                if (!value.shape.SequenceEqual(target.shape))
                    throw new InvalidDataException($"{source}: optimizer state '{name}' has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", target.shape)}]");
                target.copy_(value);
            }
        }
        if (!state.TryGetValue("adamw.step", out var step)) throw new InvalidDataException($"{source}: missing optimizer state 'adamw.step'");
        Step = step.data<long>()[0];
    }

    public void Dispose()
    {
        foreach (var t in _m) t.Dispose();
        foreach (var t in _v) t.Dispose();
    }
}

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// EMA of the trainable weights: shadow = decay·shadow + (1-decay)·param after each optimizer step, with the warmup
/// decay min(decay, (1+n)/(10+n)) diffusers uses. <see cref="SwapIn"/>/<see cref="SwapOut"/> exchange the live and shadow
/// values (validation and saving use the average). Owns its shadow tensors.
/// </summary>
public sealed class ExponentialMovingAverage : IDisposable
{
    private readonly Parameter[] _parameters;
    private readonly Tensor[] _shadow;

    public ExponentialMovingAverage(IEnumerable<Parameter> parameters, double decay)
    {
        if (!(decay > 0 && decay < 1)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "EMA decay must be in (0, 1)");
        _parameters = parameters.ToArray();
        Decay = decay;
        using var _ = no_grad();
        _shadow = _parameters.Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray();
    }

    public double Decay { get; }
    public long Updates { get; private set; }

    public void Update()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        double d = Math.Min(Decay, (1.0 + Updates) / (10.0 + Updates));
        Updates++;
        for (int i = 0; i < _parameters.Length; i++) _shadow[i].mul_(d).add_(_parameters[i], alpha: 1 - d);
    }

    /// <summary>Exchanges live and averaged values (call again to exchange back).</summary>
    public void Swap()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        for (int i = 0; i < _parameters.Length; i++)
        {
            var live = _parameters[i].detach().clone();
            _parameters[i].copy_(_shadow[i]);
            _shadow[i].copy_(live);
        }
    }

    public IEnumerable<(string Name, Tensor Value)> StateEntries()
    {
        for (int i = 0; i < _shadow.Length; i++) yield return ($"ema.{i}", _shadow[i]);
        yield return ("ema.updates", tensor(new[] { Updates }));
    }

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var _ = no_grad();
        for (int i = 0; i < _shadow.Length; i++)
        {
            if (!state.TryGetValue($"ema.{i}", out var value)) throw new InvalidDataException($"{source}: missing EMA state 'ema.{i}'");
            _shadow[i].copy_(value);
        }
        Updates = state.TryGetValue("ema.updates", out var u) ? u.data<long>()[0] : throw new InvalidDataException($"{source}: missing 'ema.updates'");
    }

    public void Dispose()
    {
        foreach (var t in _shadow) t.Dispose();
    }
}

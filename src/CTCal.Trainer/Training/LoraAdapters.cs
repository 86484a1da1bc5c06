using CTCal.Core.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// The LoRA adapters attached to one model (any <see cref="nn.Module"/> tree): every <see cref="Linear"/> whose module path
/// ends with one of the target names. Attaching freezes all the model's parameters; the trainable parameters are the
/// adapters' A and B. State keys follow diffusers/peft: <c>{prefix}.{module path}.lora_A.weight</c> [rank, in] and
/// <c>.lora_B.weight</c> [out, rank] (prefix <c>unet</c> or <c>text_encoder</c>); alpha and rank are file metadata
/// (see <see cref="LoraFile"/>). Owns its layers; disposing restores nothing (call <see cref="Restore"/> first if the
/// model lives on).
/// </summary>
public sealed class LoraAdapters : IDisposable
{
    private readonly List<LoraLayer> _layers;

    private LoraAdapters(string prefix, List<LoraLayer> layers, LoraOptions options)
    {
        Prefix = prefix;
        _layers = layers;
        Options = options;
    }

    public string Prefix { get; }
    public LoraOptions Options { get; }
    public IReadOnlyList<LoraLayer> Layers => _layers;

    /// <summary>A and B of every layer, in a stable order (layer order of the model, A before B).</summary>
    public IEnumerable<Parameter> Parameters() => _layers.SelectMany(l => new[] { l.A, l.B });

    /// <summary>Linear modules of <paramref name="root"/> whose path ends with one of <paramref name="targets"/>.</summary>
    public static IReadOnlyList<(string Path, Linear Linear)> FindTargets(nn.Module root, IEnumerable<string> targets)
    {
        var names = targets.ToArray();
        return root.named_modules()
            .Where(m => m.module is Linear && names.Any(t => m.name == t || m.name.EndsWith("." + t, StringComparison.Ordinal)))
            .Select(m => (m.name, (Linear)m.module))
            .ToList();
    }

    /// <summary>Freezes <paramref name="root"/> and attaches adapters to its target linears.</summary>
    public static LoraAdapters Attach(nn.Module root, string prefix, IEnumerable<string> targets, LoraOptions options, Generator? generator = null)
    {
        var targetList = targets.ToArray();
        var found = FindTargets(root, targetList);
        if (found.Count == 0)
            throw new ArgumentException($"{prefix}: no Linear layer named {string.Join("/", targetList)} found for LoRA");
        foreach (var p in root.parameters()) p.requires_grad = false;
        var layers = found.Select(f => new LoraLayer(f.Path, f.Linear, options.Rank, options.Scale, options.Dropout, generator)).ToList();
        return new LoraAdapters(prefix, layers, options);
    }

    /// <summary>Writes W0 + s·B·A into every adapted layer (call before each forward pass; <paramref name="training"/> draws dropout masks).</summary>
    public void Apply(bool training, Generator? generator = null)
    {
        foreach (var layer in _layers) layer.Apply(training, generator);
    }

    /// <summary>
    /// After backward: moves every adapted weight's gradient into A and B gradients, one layer at a time (one small surrogate
    /// backward per layer, so the temporaries are a layer's, not those of every adapted weight at once: about four copies
    /// of all adapted weights, 1.5 GB for SD 1.5's UNet, when they were summed into one backward). Each factor receives the
    /// gradient of its own layer's surrogate only, so the values are those of a single summed backward.
    /// </summary>
    public void AccumulateFactorGradients()
    {
        foreach (var layer in _layers) layer.AccumulateFactorGradients();
    }

    /// <summary>Writes the base weights back into the model.</summary>
    public void Restore()
    {
        foreach (var layer in _layers) layer.Restore();
    }

    /// <summary>Folds the adapters into the model for good: W = W0 + (alpha/rank)·B·A, weights frozen.</summary>
    public void Merge()
    {
        Apply(training: false);
        foreach (var layer in _layers) layer.Target.weight!.requires_grad = false;
    }

    /// <summary>The adapter tensors by peft/diffusers key (views of the live parameters; do not dispose).</summary>
    public IEnumerable<(string Key, Tensor Value)> StateEntries()
    {
        foreach (var layer in _layers)
        {
            yield return (LoraKeys.Format(Prefix, layer.Path, LoraPart.Down, LoraSpelling.Peft), layer.A);
            yield return (LoraKeys.Format(Prefix, layer.Path, LoraPart.Up, LoraSpelling.Peft), layer.B);
        }
    }

    /// <summary>
    /// Copies adapter weights from <paramref name="tensors"/> (keys as in <see cref="StateEntries"/>). Every adapter must be
    /// present with the right shape; keys with this prefix that match no adapter are refused, naming the key.
    /// </summary>
    public void Load(IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        var expected = StateEntries().ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
        foreach (var key in tensors.Keys.Where(k => k.StartsWith(Prefix + ".", StringComparison.Ordinal)))
            if (!expected.ContainsKey(key)) throw new InvalidDataException($"{source}: '{key}' matches no LoRA layer of the {Prefix}");
        using var _ = no_grad();
        foreach (var (key, parameter) in expected)
        {
            if (!tensors.TryGetValue(key, out var value)) throw new InvalidDataException($"{source}: missing '{key}'");
            if (!value.shape.SequenceEqual(parameter.shape))
                throw new InvalidDataException($"{source}: '{key}' has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", parameter.shape)}] (rank mismatch?)");
            parameter.copy_(value);
        }
    }

    public void Dispose()
    {
        foreach (var layer in _layers) layer.Dispose();
    }
}

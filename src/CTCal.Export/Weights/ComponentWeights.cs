using CTCal.Core.Safetensors;
using CTCal.Core.Weights;
using CTCal.Export.Onnx;

namespace CTCal.Export.Weights;

/// <summary>
/// The weights of one model part: a <see cref="TensorSource"/> (a file, a variant, shards or a single-file checkpoint's
/// mapped tensors; owned, disposed with this object) plus LoRA updates merged on the fly. Tensors already in the output precision without updates are copied byte for byte from the file; others are
/// read one tensor at a time into a float buffer, updated, converted and written. Checkpoints saved before diffusers
/// renamed the VAE attention parameters (<c>query</c>, <c>key</c>, <c>value</c>, <c>proj_attn</c>, possibly as 1x1 conv
/// weights [C, C, 1, 1]) are read under their old names; the ONNX initializers always carry the current names.
/// </summary>
internal sealed class ComponentWeights : IWeightSource, IDisposable
{
    private readonly TensorSource _file;
    private readonly IReadOnlyDictionary<string, List<LoraDelta>> _loras;

    public ComponentWeights(string component, TensorSource file, IReadOnlyDictionary<string, List<LoraDelta>>? loras = null)
    {
        Component = component;
        _file = file;
        _loras = loras ?? new Dictionary<string, List<LoraDelta>>();
    }

    public string Component { get; }

    private static readonly (string Current, string Legacy)[] LegacyAttentionNames =
        [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")];

    /// <summary>The name under which the file stores <paramref name="name"/> (its legacy name when only that exists).</summary>
    private string Resolve(string name)
    {
        if (_file.Contains(name)) return name;
        foreach (var (current, legacy) in LegacyAttentionNames)
        {
            if (!name.Contains(current, StringComparison.Ordinal)) continue;
            string alt = name.Replace(current, legacy, StringComparison.Ordinal);
            if (_file.Contains(alt)) return alt;
        }
        return name;
    }

    // Same shape, or the expected shape followed by extra 1s (a 1x1 conv weight standing for a linear one): same bytes.
    private static bool ShapeMatches(long[] actual, long[] expected) =>
        actual.SequenceEqual(expected)
        || (actual.Length > expected.Length && actual.Take(expected.Length).SequenceEqual(expected) && actual.Skip(expected.Length).All(d => d == 1));

    public string FilePath => _file.Path;

    /// <summary>Problems (missing, wrong shape, non-float, bad LoRA target) that would make the export fail, each naming the tensor.</summary>
    /// <param name="required">The weights the graph reads.</param>
    /// <param name="unused">Checkpoint tensors the graph deliberately does not read (they cannot change its outputs): a LoRA
    /// update of one of them is accepted and has no effect.</param>
    public List<string> Check(IEnumerable<WeightRequirement> required, IReadOnlyCollection<string>? unused = null)
    {
        var problems = new List<string>();
        var requiredNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in required)
        {
            requiredNames.Add(r.Name);
            string stored = Resolve(r.Name);
            if (!_file.Contains(stored))
            {
                problems.Add($"{Component}: missing tensor '{r.Name}' (expected shape [{string.Join(",", r.Shape)}]) in {_file.Path}");
                continue;
            }
            var info = _file.GetInfo(stored);
            if (!ShapeMatches(info.Shape, r.Shape))
                problems.Add($"{Component}: tensor '{stored}' has shape [{string.Join(",", info.Shape)}] in {_file.Path}, expected [{string.Join(",", r.Shape)}]");
            else if (info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
                problems.Add($"{Component}: tensor '{r.Name}' has dtype {info.DType} in {_file.Path}, expected F32, F16 or BF16");
        }
        foreach (var (weight, deltas) in _loras)
        {
            if (unused is not null && unused.Contains(weight) && !requiredNames.Contains(weight) && _file.Contains(Resolve(weight))) continue;
            if (!requiredNames.Contains(weight) || !_file.Contains(Resolve(weight)))
            {
                problems.Add($"{Component}: LoRA module '{deltas[0].Module}' ({deltas[0].SourceFile}) targets '{weight}', which this model does not have");
                continue;
            }
            var info = _file.GetInfo(Resolve(weight));
            foreach (var d in deltas)
            {
                if (info.Shape[0] != d.OutFeatures || info.ElementCount != d.OutFeatures * d.InFeatures)
                    problems.Add($"{Component}: LoRA module '{d.Module}' ({d.SourceFile}) is [{d.OutFeatures} x {d.InFeatures}] but '{weight}' has shape [{string.Join(",", info.Shape)}]");
            }
        }
        return problems;
    }

    public void Write(string name, bool fp16, Stream destination)
    {
        bool merged = _loras.TryGetValue(name, out var deltas);
        name = Resolve(name);
        if (!merged)
        {
            _file.WriteAs(name, fp16, destination);
            return;
        }
        float[] w = _file.ReadAsFloat32(name);
        foreach (var d in deltas!) d.ApplyTo(w);
        TensorSource.WriteFloats(w, fp16, destination);
    }

    public void Dispose() => _file.Dispose();
}

using System.Runtime.InteropServices;
using CTCal.Core.Safetensors;
using CTCal.Export.Onnx;

namespace CTCal.Export.Weights;

/// <summary>
/// The weights of one model part: a safetensors file (owned, disposed with this object) plus LoRA updates merged on the
/// fly. Tensors already in the output precision without updates are copied byte for byte from the file; others are
/// read one tensor at a time into a float buffer, updated, converted and written.
/// </summary>
internal sealed class ComponentWeights : IWeightSource, IDisposable
{
    private readonly SafetensorsFile _file;
    private readonly IReadOnlyDictionary<string, List<LoraDelta>> _loras;

    public ComponentWeights(string component, SafetensorsFile file, IReadOnlyDictionary<string, List<LoraDelta>>? loras = null)
    {
        Component = component;
        _file = file;
        _loras = loras ?? new Dictionary<string, List<LoraDelta>>();
    }

    public string Component { get; }

    public string FilePath => _file.Path;

    /// <summary>Problems (missing, wrong shape, non-float, bad LoRA target) that would make the export fail, each naming the tensor.</summary>
    public List<string> Check(IEnumerable<WeightRequirement> required)
    {
        var problems = new List<string>();
        var requiredNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in required)
        {
            requiredNames.Add(r.Name);
            if (!_file.Contains(r.Name))
            {
                problems.Add($"{Component}: missing tensor '{r.Name}' (expected shape [{string.Join(",", r.Shape)}]) in {_file.Path}");
                continue;
            }
            var info = _file.GetInfo(r.Name);
            if (!info.Shape.SequenceEqual(r.Shape))
                problems.Add($"{Component}: tensor '{r.Name}' has shape [{string.Join(",", info.Shape)}] in {_file.Path}, expected [{string.Join(",", r.Shape)}]");
            else if (info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
                problems.Add($"{Component}: tensor '{r.Name}' has dtype {info.DType} in {_file.Path}, expected F32, F16 or BF16");
        }
        foreach (var (weight, deltas) in _loras)
        {
            if (!requiredNames.Contains(weight) || !_file.Contains(weight))
            {
                problems.Add($"{Component}: LoRA module '{deltas[0].Module}' ({deltas[0].SourceFile}) targets '{weight}', which this model does not have");
                continue;
            }
            var info = _file.GetInfo(weight);
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
        var info = _file.GetInfo(name);
        bool merged = _loras.TryGetValue(name, out var deltas);
        if (!merged && info.DType == (fp16 ? SafetensorsDType.F16 : SafetensorsDType.F32))
        {
            _file.CopyBytesTo(name, destination);
            return;
        }
        float[] w = _file.ReadAsFloat32(name);
        if (merged)
        {
            foreach (var d in deltas!) d.ApplyTo(w);
        }
        if (!fp16)
        {
            destination.Write(MemoryMarshal.AsBytes(w.AsSpan()));
            return;
        }
        var buffer = new Half[Math.Min(w.Length, 1 << 16)];
        for (int i = 0; i < w.Length; i += buffer.Length)
        {
            int n = Math.Min(buffer.Length, w.Length - i);
            for (int j = 0; j < n; j++) buffer[j] = (Half)w[i + j];
            destination.Write(MemoryMarshal.AsBytes(buffer.AsSpan(0, n)));
        }
    }

    public void Dispose() => _file.Dispose();
}

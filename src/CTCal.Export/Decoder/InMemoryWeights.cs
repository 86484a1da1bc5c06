using System.Runtime.InteropServices;
using CTCal.Export.Onnx;

namespace CTCal.Export.Decoder;

/// <summary>Float32 weights held in memory by name (small models only), as an <see cref="IWeightSource"/>.</summary>
public sealed class InMemoryWeights : IWeightSource
{
    private readonly IReadOnlyDictionary<string, float[]> _weights;

    /// <summary>Wraps <paramref name="weights"/> (name -> row-major float32 values).</summary>
    public InMemoryWeights(IReadOnlyDictionary<string, float[]> weights) => _weights = weights;

    /// <inheritdoc />
    public void Write(string name, bool fp16, Stream destination)
    {
        if (!_weights.TryGetValue(name, out var values)) throw new KeyNotFoundException($"weight '{name}' is missing");
        if (fp16)
        {
            var half = new Half[values.Length];
            for (int i = 0; i < values.Length; i++) half[i] = (Half)values[i];
            destination.Write(MemoryMarshal.AsBytes(half.AsSpan()));
        }
        else
        {
            destination.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        }
    }
}

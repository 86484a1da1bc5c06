using System.Runtime.InteropServices;
using System.Text;
using CTCal.Core.Safetensors;
using CTCal.Export.Onnx;

namespace CTCal.Export.Fixtures;

/// <summary>
/// Seeded random weights for benchmark and test fixtures, streamed tensor by tensor through a 1 MiB buffer into a
/// safetensors file (memory stays flat whatever the model's size). Each tensor's values depend only on the seed and the
/// tensor's name, so the same seed gives the same bytes whatever else the file holds and in whatever order it is written.
/// <para>Initialisation, chosen so a forward pass stays finite and well inside float16's range: weights of rank &gt;= 2
/// (linear, conv) uniform in ±1/sqrt(fan_in) (fan_in = elements / out-features); the CLIP token and position embeddings
/// uniform in ±0.02; norm weights (1-D weights whose name contains "norm") 1; every bias and every other 1-D tensor 0.</para>
/// </summary>
public static class RandomWeights
{
    /// <summary>The value every element of <paramref name="tensor"/> starts from and the half-width of its uniform noise.</summary>
    public static (float Offset, float Bound) InitFor(WeightRequirement tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        string name = tensor.Name;
        if (name.EndsWith(".bias", StringComparison.Ordinal)) return (0f, 0f);
        if (name.StartsWith("text_model.embeddings.", StringComparison.Ordinal)) return (0f, 0.02f);
        if (tensor.Shape.Length >= 2)
        {
            long count = ElementCount(tensor.Shape);
            long fanIn = Math.Max(1, count / Math.Max(1, tensor.Shape[0]));
            return (0f, 1f / MathF.Sqrt(fanIn));
        }
        return name.Contains("norm", StringComparison.Ordinal) ? (1f, 0f) : (0f, 0f);
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> (sorted by name) to <paramref name="path"/> as <paramref name="dtype"/>
    /// (F32 or F16) atomically (<see cref="SafetensorsWriter"/>).
    /// </summary>
    /// <exception cref="ArgumentException">a dtype other than F32 or F16.</exception>
    public static void Write(string path, IEnumerable<WeightRequirement> tensors, ulong seed, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (dtype is not (SafetensorsDType.F32 or SafetensorsDType.F16))
            throw new ArgumentException($"random weights are written as F32 or F16, not {dtype}", nameof(dtype));
        var entries = tensors.OrderBy(t => t.Name, StringComparer.Ordinal)
            .Select(t => new SafetensorsWriteEntry(t.Name, dtype, t.Shape, stream => WriteTensor(stream, t, seed, dtype)))
            .ToList();
        SafetensorsWriter.Write(path, entries);
    }

    /// <summary>Bytes the tensors take as <paramref name="dtype"/>.</summary>
    public static long ByteCount(IEnumerable<WeightRequirement> tensors, SafetensorsDType dtype) =>
        tensors.Sum(t => ElementCount(t.Shape)) * (dtype == SafetensorsDType.F16 ? 2 : 4);

    private static long ElementCount(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    private static void WriteTensor(Stream stream, WeightRequirement tensor, ulong seed, SafetensorsDType dtype)
    {
        (float offset, float bound) = InitFor(tensor);
        ulong state = TensorSeed(seed, tensor.Name);
        long count = ElementCount(tensor.Shape);
        var floats = new float[1 << 18];
        var halves = dtype == SafetensorsDType.F16 ? new Half[floats.Length] : null;
        for (long done = 0; done < count; done += floats.Length)
        {
            int n = (int)Math.Min(floats.Length, count - done);
            for (int i = 0; i < n; i++)
            {
                // xorshift64: 24 high bits -> uniform [-1, 1)
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                floats[i] = offset + bound * ((state >> 40) * (2f / (1 << 24)) - 1f);
            }
            if (halves is null)
            {
                stream.Write(MemoryMarshal.AsBytes(floats.AsSpan(0, n)));
            }
            else
            {
                for (int i = 0; i < n; i++) halves[i] = (Half)floats[i];
                stream.Write(MemoryMarshal.AsBytes(halves.AsSpan(0, n)));
            }
        }
    }

    // SplitMix64 over seed and FNV-1a of the name; never 0 (xorshift's fixed point).
    private static ulong TensorSeed(ulong seed, string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(name))
        {
            h ^= b;
            h *= 1099511628211UL;
        }
        ulong z = seed + h + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return z == 0 ? 0x9E3779B97F4A7C15UL : z;
    }
}

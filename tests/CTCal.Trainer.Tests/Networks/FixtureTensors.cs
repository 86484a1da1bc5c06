using Xunit;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>Reads the fixtures' plain safetensors files (F32 / I64) into tensors, for comparing against reference outputs.</summary>
internal static class FixtureTensors
{
    public static Dictionary<string, Tensor> Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__") continue;
            string dtype = entry.Value.GetProperty("dtype").GetString()!;
            long[] shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            int start = (int)(8 + headerLength + offsets[0]), length = (int)(offsets[1] - offsets[0]);
            var span = bytes.AsSpan(start, length);
            result[entry.Name] = dtype switch
            {
                "F32" => torch.tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(span).ToArray(), shape),
                "I64" => torch.tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(span).ToArray(), shape),
                _ => throw new NotSupportedException($"{path}: {entry.Name} has dtype {dtype}"),
            };
        }
        return result;
    }

    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        Assert.Equal(b.shape, a.shape);
        using var d = a.to(ScalarType.Float32).sub(b.to(ScalarType.Float32)).abs().max();
        return d.item<float>();
    }
}

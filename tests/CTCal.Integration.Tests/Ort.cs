using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>Runs an exported model.onnx in ONNX Runtime (CPU provider, all graph optimizations on).</summary>
internal sealed class Ort : IDisposable
{
    private readonly InferenceSession _session;

    public Ort(string modelPath)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1 };
        _session = new InferenceSession(modelPath, options);
    }

    /// <summary>Runs with float32 and int32 inputs; returns every output as float32 data and shape.</summary>
    public Dictionary<string, (float[] Data, long[] Shape)> Run(params (string Name, Array Data, long[] Shape)[] inputs)
    {
        var values = new List<OrtValue>();
        try
        {
            foreach (var (name, data, shape) in inputs)
            {
                values.Add(data switch
                {
                    float[] f => OrtValue.CreateTensorValueFromMemory(f, shape),
                    int[] i => OrtValue.CreateTensorValueFromMemory(i, shape),
                    _ => throw new ArgumentException($"input '{name}': unsupported element type {data.GetType()}"),
                });
            }
            var names = _session.OutputNames;
            using var runOptions = new RunOptions();
            using var outputs = _session.Run(runOptions, inputs.Select(i => i.Name).ToArray(), values, names);
            var result = new Dictionary<string, (float[], long[])>(StringComparer.Ordinal);
            for (int i = 0; i < names.Count; i++)
                result[names[i]] = (outputs[i].GetTensorDataAsSpan<float>().ToArray(), outputs[i].GetTensorTypeAndShape().Shape);
            return result;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    public void Dispose() => _session.Dispose();
}

/// <summary>Conversions and comparisons between TorchSharp tensors and flat float arrays.</summary>
internal static class Compare
{
    public static float[] Floats(Tensor t)
    {
        using var c = t.detach().cpu().to(ScalarType.Float32).contiguous();
        return c.data<float>().ToArray();
    }

    public static int[] Ints(Tensor t)
    {
        using var c = t.detach().cpu().to(ScalarType.Int32).contiguous();
        return c.data<int>().ToArray();
    }

    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    public static double Std(ReadOnlySpan<float> a)
    {
        double mean = 0, sq = 0;
        foreach (float v in a) mean += v;
        mean /= a.Length;
        foreach (float v in a) sq += (v - mean) * (v - mean);
        return Math.Sqrt(sq / a.Length);
    }

    /// <summary>Asserts ORT and TorchSharp agree within <paramref name="tolerance"/> and the output is finite and not near-constant.</summary>
    public static void Agree(string what, float[] ort, long[] ortShape, Tensor torchOut, Xunit.Abstractions.ITestOutputHelper? log = null, double tolerance = 1e-4)
    {
        Assert.Equal(torchOut.shape, ortShape);
        float[] expected = Floats(torchOut);
        Assert.All(ort, v => Assert.True(float.IsFinite(v), $"{what}: non-finite ORT output"));
        double std = Std(expected);
        Assert.True(std > 0.05, $"{what}: the reference output is nearly constant (std {std})");
        double err = MaxAbsDiff(ort, expected);
        log?.WriteLine($"{what}: max abs error {err:E3}, output std {std:F3}, max |value| {expected.Max(MathF.Abs):F3}");
        Assert.True(err <= tolerance, $"{what}: ONNX Runtime differs from TorchSharp by {err:E3} (tolerance {tolerance:E1}, output std {std:F3})");
    }
}

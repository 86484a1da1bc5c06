using Microsoft.ML.OnnxRuntime;

namespace CTCal.Export.Tests;

/// <summary>Runs an exported model.onnx in ONNX Runtime (CPU, all graph optimizations on).</summary>
internal sealed class OrtRunner : IDisposable
{
    private readonly InferenceSession _session;

    public OrtRunner(string modelPath)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1 };
        _session = new InferenceSession(modelPath, options);
    }

    public InferenceSession Session => _session;

    public sealed record Tensor(float[] Data, long[] Shape);

    /// <summary>Runs with float and int32 inputs; returns every output as float.</summary>
    public Dictionary<string, Tensor> Run(params (string Name, Array Data, long[] Shape)[] inputs)
    {
        var values = new List<OrtValue>();
        try
        {
            foreach (var (_, data, shape) in inputs)
            {
                values.Add(data switch
                {
                    float[] f => OrtValue.CreateTensorValueFromMemory(f, shape),
                    int[] i => OrtValue.CreateTensorValueFromMemory(i, shape),
                    long[] l => OrtValue.CreateTensorValueFromMemory(l, shape),
                    _ => throw new ArgumentException("unsupported input type"),
                });
            }
            var outputNames = _session.OutputNames;
            using var runOptions = new RunOptions();
            using var outputs = _session.Run(runOptions, inputs.Select(i => i.Name).ToArray(), values, outputNames);
            var result = new Dictionary<string, Tensor>();
            for (int i = 0; i < outputNames.Count; i++)
            {
                var info = outputs[i].GetTensorTypeAndShape();
                result[outputNames[i]] = new Tensor(outputs[i].GetTensorDataAsSpan<float>().ToArray(), info.Shape);
            }
            return result;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    public void Dispose() => _session.Dispose();

    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    public static float MaxAbs(ReadOnlySpan<float> a)
    {
        float m = 0;
        foreach (float v in a) m = Math.Max(m, Math.Abs(v));
        return m;
    }
}

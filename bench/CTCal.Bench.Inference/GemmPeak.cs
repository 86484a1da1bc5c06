using System.Diagnostics;
using CTCal.Export.Decoder;
using CTCal.Export.Onnx;
using CTCal.Export.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace CTCal.Bench.Inference;

/// <summary>
/// The machine's measured GEMM peak, the yardstick for a network's achieved GFLOP/s: a one-node ONNX graph,
/// <c>Y = MatMul(A, B)</c> with fp32 A, B of <c>n x n</c>, B a constant initializer as a network's weights are (ONNX
/// Runtime packs it once at session creation, as it does the networks' Gemm and Conv weights; with B as a second input it
/// is re-packed every run, which measured 51-55 GFLOP/s at n = 2048 on one thread of the project's machine against
/// 78-80 for the packed n = 1024, below what the mid UNet's convolutions themselves reach, so no ceiling), run by ONNX
/// Runtime's CPU provider with the session settings of the networks it is compared with (<see cref="StepBench.CpuOptions"/>:
/// the same intra-op threads), input and output bound once (I/O binding) so a run is the GEMM alone. <see cref="Flops"/> = 2 n^3 per run; the bench times a sample of
/// runs beside each timed step so the peak is measured under the same load as the steps.
/// </summary>
internal sealed class GemmPeak : IDisposable
{
    private readonly SessionOptions _options;
    private readonly InferenceSession _session;
    private readonly RunOptions _run = new();
    private readonly OrtValue[] _values;
    private readonly OrtIoBinding _binding;

    /// <param name="folder">Where the graph is written (<c>model.onnx</c>, created).</param>
    public GemmPeak(string folder, int n, int threads)
    {
        N = n;
        var graph = new OnnxGraph("gemm", fp16Weights: false);
        string a = graph.Input("a", TensorProto.Types.DataType.Float, (long)n, (long)n);
        string b = graph.Weight("b", (long)n, (long)n); // a constant, packed once like the networks' weights
        graph.Output(graph.Op("MatMul", [a, b]), "y", TensorProto.Types.DataType.Float, (long)n, (long)n);
        if (Directory.Exists(folder)) Directory.Delete(folder, true);
        var random = new Random(3);
        float[] weights = new float[(long)n * n];
        for (int k = 0; k < weights.Length; k++) weights[k] = (float)(random.NextDouble() * 2 - 1);
        OnnxModelWriter.Write(graph, new InMemoryWeights(new Dictionary<string, float[]> { ["b"] = weights }), folder, OnnxModelWriter.DefaultExternalDataThreshold);
        ModelPath = Path.Combine(folder, OnnxModelWriter.ModelFileName);

        _options = StepBench.CpuOptions(threads);
        _session = new InferenceSession(ModelPath, _options);
        long[] shape = [n, n];
        _values = new OrtValue[2];
        for (int i = 0; i < 2; i++)
        {
            _values[i] = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, shape);
            var span = _values[i].GetTensorMutableDataAsSpan<float>();
            for (int k = 0; k < span.Length; k++) span[k] = (float)(random.NextDouble() * 2 - 1);
        }

        _binding = _session.CreateIoBinding();
        _binding.BindInput("a", _values[0]);
        _binding.BindOutput("y", _values[1]);
    }

    /// <summary>The side of the square matrices.</summary>
    public int N { get; }

    /// <summary>The written one-node graph.</summary>
    public string ModelPath { get; }

    /// <summary>2 n^3: the multiply-adds of one n x n x n GEMM, twice.</summary>
    public double Flops => 2.0 * N * N * N;

    /// <summary><paramref name="repeats"/> GEMMs back to back; returns their milliseconds in total.</summary>
    public double TimeMs(int repeats = 1)
    {
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < repeats; i++) _session.RunWithBinding(_run, _binding);
        return clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>GFLOP/s of a run that took <paramref name="ms"/> milliseconds.</summary>
    public double GflopsPerSecond(double ms) => Flops / (ms * 1e6);

    public void Dispose()
    {
        _binding.Dispose();
        foreach (var v in _values) v.Dispose();
        _run.Dispose();
        _session.Dispose();
        _options.Dispose();
    }
}

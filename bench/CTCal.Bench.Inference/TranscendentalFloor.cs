using System.Diagnostics;
using CTCal.Export.Decoder;
using CTCal.Export.Onnx;
using CTCal.Export.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace CTCal.Bench.Inference;

/// <summary>
/// A lower bound on a step's time that no graph rewrite can beat: its counted FLOPs at the measured GEMM peak, plus one
/// evaluation per output element of each exponential-class operator (<see cref="FlopCounter.TranscendentalOps"/>, counted
/// on the plain graph) at the cost ONNX Runtime's own kernel takes per element on a cache-resident tensor of this
/// machine. Exact attention needs one exp per score (B x heads x S x L, whatever the head size), GELU one erf and SiLU one
/// sigmoid per activation; the FLOP count gives them nothing, so at small head sizes they cap the fraction of the GEMM
/// peak a step can reach. Everything else (normalizations, residual adds, layout conversions) is left out, so the real
/// floor is higher and the bound printed is generous.
/// </summary>
internal static class TranscendentalFloor
{
    /// <summary>Elements per timed call and thread: 64 x 1024 floats (256 KiB in, 256 KiB out), cache-resident on a core with a 512 KiB L2 or more.</summary>
    private const int RowsPerThread = 64, Columns = 1024;

    /// <summary>
    /// Nanoseconds per element of each of <paramref name="ops"/> in ONNX Runtime (a one-node graph written to
    /// <paramref name="folder"/>, <paramref name="threads"/> intra-op threads on 64 x 1024 elements per thread, I/O bound
    /// once): the median of 15 samples of 20 back-to-back calls after 20 warm-up calls.
    /// </summary>
    public static IReadOnlyDictionary<string, double> NsPerElement(IEnumerable<string> ops, int threads, string folder)
    {
        int Rows = RowsPerThread * Math.Max(1, threads);
        var result = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (string op in ops)
        {
            string graphFolder = Path.Combine(folder, op.ToLowerInvariant());
            if (Directory.Exists(graphFolder)) Directory.Delete(graphFolder, true);
            var g = new OnnxGraph(op, fp16Weights: false);
            string x = g.Input("x", TensorProto.Types.DataType.Float, (long)Rows, (long)Columns);
            string y = op == "Softmax" ? g.Op(op, [x], null, OnnxGraph.Attr("axis", -1L)) : g.Op(op, [x]);
            g.Output(y, "y", TensorProto.Types.DataType.Float, (long)Rows, (long)Columns);
            OnnxModelWriter.Write(g, new InMemoryWeights(new Dictionary<string, float[]>()), graphFolder, OnnxModelWriter.DefaultExternalDataThreshold);

            using var options = StepBench.CpuOptions(threads);
            using var session = new InferenceSession(Path.Combine(graphFolder, OnnxModelWriter.ModelFileName), options);
            using var input = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, [Rows, Columns]);
            using var output = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, [Rows, Columns]);
            var data = input.GetTensorMutableDataAsSpan<float>();
            var random = new Random(5);
            for (int i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 8 - 4); // the range activations and scores live in
            using var binding = session.CreateIoBinding();
            binding.BindInput("x", input);
            binding.BindOutput("y", output);
            using var run = new RunOptions();
            const int calls = 20;
            for (int i = 0; i < calls; i++) session.RunWithBinding(run, binding);
            var samples = new List<double>();
            for (int s = 0; s < 15; s++)
            {
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < calls; i++) session.RunWithBinding(run, binding);
                samples.Add(clock.Elapsed.TotalMilliseconds * 1e6 / calls / (Rows * Columns));
            }

            samples.Sort();
            result[op] = samples[samples.Count / 2];
        }

        return result;
    }

    /// <summary>
    /// The exp-class work of a step with <paramref name="elements"/> (counted on its plain graph) at this machine's per-element
    /// costs with <paramref name="threads"/> threads (<see cref="NsPerElement"/>, graphs under <paramref name="folder"/>).
    /// </summary>
    public static TranscendentalCost Cost(IReadOnlyList<OpElements> elements, int threads, string folder)
    {
        var costs = NsPerElement(elements.Select(e => e.Op), threads, folder);
        return new TranscendentalCost(Milliseconds(elements, costs),
            string.Join(", ", elements.Select(e => $"{e.Op} {e.Elements / 1e6:F1} M x {costs[e.Op]:F2} ns")));
    }

    /// <summary>Milliseconds per step the <paramref name="elements"/> take at <paramref name="nsPerElement"/>.</summary>
    public static double Milliseconds(IReadOnlyList<OpElements> elements, IReadOnlyDictionary<string, double> nsPerElement) =>
        elements.Sum(e => e.Elements * nsPerElement[e.Op]) / 1e6;
}

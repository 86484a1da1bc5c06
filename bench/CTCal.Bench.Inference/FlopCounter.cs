using System.Text.Json;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Bench.Inference;

/// <summary>The floating-point operations of one operator kind in one run: <paramref name="Nodes"/> nodes, <paramref name="Flops"/> = 2 x multiply-adds.</summary>
internal sealed record OpFlops(string Op, int Nodes, double Flops);

/// <summary>The output elements of one element-wise transcendental operator kind in one run (<see cref="FlopCounter.TranscendentalOps"/>).</summary>
internal sealed record OpElements(string Op, int Nodes, long Elements);

/// <summary>
/// Counts the floating-point operations of one run of an ONNX graph from the shapes ONNX Runtime records when it profiles
/// a run (<see cref="SessionOptions.EnableProfiling"/>: one <c>*_kernel_time</c> event per node run, with
/// <c>args.op_name</c>, <c>args.input_type_shape</c> and <c>args.output_type_shape</c>). FLOPs are 2 x the multiply-adds
/// of the matrix operators, which are nearly all of a UNet's arithmetic; element-wise operators, normalizations and
/// softmax are left out (they are memory-bound, and a GEMM peak is no yardstick for them):
/// <list type="bullet">
/// <item>Conv, FusedConv, NchwcConv: 2 x |Y| x (C_in / group) x kH x kW, i.e. 2 x |Y| x |W| / W[0] (W = [C_out, C_in/group, kH, kW]).</item>
/// <item>ConvTranspose: 2 x |X| x |W| / W[0] (W = [C_in, C_out/group, kH, kW]).</item>
/// <item>MatMul, FusedMatMul, Gemm, FusedGemm: 2 x |Y| x K, K the inner dimension of A (A's last, or its second to last when transposed).</item>
/// <item>com.microsoft MultiHeadAttention: QK^T and AV, 2 x B x S x L x (D_qk + D_v) (query [B, S, D_qk], key [B, L, D_qk] or
/// [B, N, L, H], value alike; packed QKV [B, S, N, 3, H]: L = S, D_qk = D_v = N x H); its scaling and softmax are left out.</item>
/// <item>com.microsoft Attention: the QKV projection (2 x B x S x D_in x W[1]) plus QK^T and AV as above, D = W[1] / 3.</item>
/// </list>
/// <see cref="Count(string, SessionOptions, IReadOnlyList{ValueTuple{string, float[], long[]}})"/> profiles with graph
/// optimizations off, so the shapes are the exported graph's own (the work the model asks for, the same for a plain and a
/// fused export of one network); with them on, NchwcConv's channels are padded to ONNX Runtime's block size and the count
/// of such nodes can exceed the graph's work.
/// </summary>
internal static class FlopCounter
{
    /// <summary>The operators counted.</summary>
    public static IReadOnlyCollection<string> CountedOps { get; } =
        ["Conv", "FusedConv", "NchwcConv", "ConvTranspose", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MultiHeadAttention", "Attention"];

    /// <summary>
    /// The element-wise operators that evaluate an exponential-class function per element, whose outputs
    /// <see cref="ElementsFromProfile"/> counts: in a plain export, attention's softmax (one exp per score), GELU's Erf and
    /// SiLU's Sigmoid. Fused graphs hide them inside contrib operators, so count them on the plain graph of the same network.
    /// </summary>
    public static IReadOnlyCollection<string> TranscendentalOps { get; } = ["Softmax", "Exp", "Erf", "Sigmoid", "Tanh"];

    /// <summary>
    /// Runs <paramref name="modelPath"/> once on <paramref name="inputs"/> with profiling on and graph optimizations off
    /// (intra-op threads, arena and the rest from <paramref name="options"/>, fresh options this call changes and the
    /// caller disposes) and counts its FLOPs per operator kind, most first. The profile is written to a temporary folder,
    /// deleted afterwards.
    /// </summary>
    public static IReadOnlyList<OpFlops> Count(string modelPath, SessionOptions options, IReadOnlyList<(string Name, float[] Data, long[] Shape)> inputs) =>
        FromProfile(Profile(modelPath, options, inputs));

    /// <summary>
    /// The JSON of one profiled run of <paramref name="modelPath"/> on <paramref name="inputs"/>, graph optimizations off
    /// (see <see cref="Count"/>), for <see cref="FromProfile"/> and <see cref="ElementsFromProfile"/>.
    /// </summary>
    public static string Profile(string modelPath, SessionOptions options, IReadOnlyList<(string Name, float[] Data, long[] Shape)> inputs)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"ctcal-flops-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            options.GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL;
            // the prefix first: enabling profiling hands ONNX Runtime the prefix set at that moment
            options.ProfileOutputPathPrefix = Path.Combine(folder, "profile");
            options.EnableProfiling = true;
            string profile;
            using (var session = new InferenceSession(modelPath, options))
            {
                var values = inputs.Select(i => OrtValue.CreateTensorValueFromMemory(i.Data, i.Shape)).ToArray();
                try
                {
                    using var run = new RunOptions();
                    using var outputs = session.Run(run, inputs.Select(i => i.Name).ToArray(), values, session.OutputNames);
                }
                finally
                {
                    foreach (var v in values) v.Dispose();
                }

                profile = session.EndProfiling();
            }

            return File.ReadAllText(Path.IsPathRooted(profile) ? profile : Path.Combine(Environment.CurrentDirectory, profile));
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }

    /// <summary>The FLOPs of the node runs in an ONNX Runtime profile (a JSON array of trace events), per operator kind, most first.</summary>
    /// <exception cref="InvalidDataException">The profile is not a JSON array or a counted node lacks its shapes.</exception>
    public static IReadOnlyList<OpFlops> FromProfile(string json)
    {
        var totals = new Dictionary<string, (int Nodes, double Flops)>(StringComparer.Ordinal);
        foreach (var (op, node, inputs, outputs) in NodeRuns(json))
        {
            if (!CountedOps.Contains(op))
            {
                continue;
            }

            double flops = NodeFlops(op, inputs, outputs, node);
            var (n, f) = totals.GetValueOrDefault(op);
            totals[op] = (n + 1, f + flops);
        }

        return totals.Select(t => new OpFlops(t.Key, t.Value.Nodes, t.Value.Flops)).OrderByDescending(o => o.Flops).ToArray();
    }

    /// <summary>Each node run of a profile: operator, node event name, input and output shapes (null where absent).</summary>
    private static IEnumerable<(string Op, string Node, IReadOnlyList<long[]?> Inputs, IReadOnlyList<long[]?> Outputs)> NodeRuns(string json)
    {
        using var doc = JsonDocument.Parse(json);
        if (doc.RootElement.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"an ONNX Runtime profile is a JSON array of events, found {doc.RootElement.ValueKind}");
        }

        var runs = new List<(string, string, IReadOnlyList<long[]?>, IReadOnlyList<long[]?>)>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            if (!e.TryGetProperty("cat", out var cat) || cat.GetString() != "Node"
                || !e.TryGetProperty("name", out var name) || name.GetString()?.EndsWith("_kernel_time", StringComparison.Ordinal) != true
                || !e.TryGetProperty("args", out var args) || !args.TryGetProperty("op_name", out var opName))
            {
                continue;
            }

            string op = opName.GetString()!;
            if (!CountedOps.Contains(op) && !TranscendentalOps.Contains(op))
            {
                continue;
            }

            string node = name.GetString()!;
            runs.Add((op, node, Shapes(args, "input_type_shape", node), Shapes(args, "output_type_shape", node)));
        }

        return runs;
    }

    /// <summary>The output elements of the <see cref="TranscendentalOps"/> node runs in an ONNX Runtime profile, per operator kind, most first.</summary>
    /// <exception cref="InvalidDataException">The profile is not a JSON array or a counted node lacks its output shape.</exception>
    public static IReadOnlyList<OpElements> ElementsFromProfile(string json)
    {
        var totals = new Dictionary<string, (int Nodes, long Elements)>(StringComparer.Ordinal);
        foreach (var (op, node, _, outputs) in NodeRuns(json))
        {
            if (!TranscendentalOps.Contains(op))
            {
                continue;
            }

            long[] y = outputs.Count > 0 && outputs[0] is { } shape ? shape : throw new InvalidDataException($"{node} ({op}): output 0 has no shape in the profile");
            var (n, e) = totals.GetValueOrDefault(op);
            totals[op] = (n + 1, e + Size(y));
        }

        return totals.Select(t => new OpElements(t.Key, t.Value.Nodes, t.Value.Elements)).OrderByDescending(o => o.Elements).ToArray();
    }

    /// <summary>2 x the multiply-adds of one node of a counted operator, from its input and output shapes (a missing optional input is null).</summary>
    public static double NodeFlops(string op, IReadOnlyList<long[]?> inputs, IReadOnlyList<long[]?> outputs, string node)
    {
        long[] In(int i) => i < inputs.Count && inputs[i] is { } s ? s : throw new InvalidDataException($"{node} ({op}): input {i} has no shape in the profile");
        long[] Out0() => outputs.Count > 0 && outputs[0] is { } s ? s : throw new InvalidDataException($"{node} ({op}): output 0 has no shape in the profile");
        switch (op)
        {
            case "Conv" or "FusedConv" or "NchwcConv":
            {
                long[] w = In(1); // [C_out, C_in / group, kH, kW]
                return 2.0 * Size(Out0()) * (Size(w) / w[0]);
            }

            case "ConvTranspose":
            {
                long[] w = In(1); // [C_in, C_out / group, kH, kW]
                return 2.0 * Size(In(0)) * (Size(w) / w[0]);
            }

            case "MatMul" or "FusedMatMul" or "Gemm" or "FusedGemm":
            {
                long[] a = In(0), y = Out0();
                // A is [..., M, K], or [..., K, M] when transposed; Y is [..., M, N] (a 1-D A is [K])
                long k = a.Length == 1 ? a[0] : y.Length >= 2 && a[^2] == y[^2] ? a[^1] : a[^2];
                return 2.0 * Size(y) * k;
            }

            case "MultiHeadAttention":
            {
                long[] q = In(0), y = Out0(); // y: [B, S, D_v]
                long batch = y[0], s = y[1], dv = y[2];
                long dqk, l;
                long[]? key = inputs.Count > 1 ? inputs[1] : null;
                if (q.Length == 5)
                {
                    // packed QKV [B, S, N, 3, H]
                    dqk = q[2] * q[4];
                    l = s;
                }
                else
                {
                    dqk = q[2];
                    l = key is null ? s : key.Length == 4 ? key[2] : key[1]; // [B, N, L, H] or [B, L, D]
                }

                return 2.0 * batch * s * l * (dqk + dv);
            }

            case "Attention":
            {
                long[] x = In(0), w = In(1); // x [B, S, D_in], w [D_in, 3 D]
                long batch = x[0], s = x[1], d = w[1] / 3;
                return 2.0 * batch * s * x[2] * w[1] + 2.0 * batch * s * s * (2 * d);
            }

            default:
                throw new ArgumentException($"{op} is not a counted operator (counted: {string.Join(", ", CountedOps)})", nameof(op));
        }
    }

    private static long Size(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    // args.input_type_shape: [{"float": [2, 4, 32, 32]}, {}, ...]: one object per input, keyed by element type; empty when absent
    private static IReadOnlyList<long[]?> Shapes(JsonElement args, string key, string node)
    {
        if (!args.TryGetProperty(key, out var list) || list.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{node}: the profile has no {key}");
        }

        return list.EnumerateArray().Select(item =>
        {
            var dims = item.ValueKind == JsonValueKind.Object ? item.EnumerateObject().Select(p => p.Value).FirstOrDefault() : default;
            return dims.ValueKind == JsonValueKind.Array ? dims.EnumerateArray().Select(d => d.GetInt64()).ToArray() : null;
        }).ToArray();
    }
}

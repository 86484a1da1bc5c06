using CTCal.Export.Onnx.Proto;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Onnx;

/// <summary>
/// Rewrites a built graph whose weights are stored as float16 (<see cref="OnnxGraph.Fp16Weights"/>) to compute in float16,
/// after ONNX Runtime's float16 converter (onnxruntime/python/tools/transformers/float16.py, <c>convert_float_to_float16</c>
/// with <c>keep_io_types</c> and an op block list): a post-pass over the node list, so no graph builder changes.
/// </summary>
/// <remarks>
/// <para>Each node runs in the precision its inputs carry: the weights' Casts to float are dropped, so the weights enter as
/// float16, and a node with a float16 input runs in float16 (its float32 inputs are cast, float32 constants are stored again
/// as float16). A node whose float inputs are all float32 stays float32: the graph inputs and what is computed from them and
/// constants alone, which keeps the timestep embedding (timestep x frequencies, Sin, Cos) in float32 up to the first
/// Linear, as diffusers does (<c>get_timestep_embedding</c> in float32, cast to the UNet's dtype before
/// <c>linear_1</c>).</para>
/// <para>float32 islands, whatever their inputs: <see cref="Fp32Ops"/> (InstanceNormalization, the GroupNorm core;
/// LayerNormalization; Softmax; ReduceMean, an RMS norm's mean of squares; Sin, Cos) and, for each Softmax, the chain of
/// attention scores before it (MatMul q.k, its scale Mul, the additive mask), which is diffusers' <c>upcast_attention</c>
/// and <c>upcast_softmax</c> applied everywhere: q.k of float16 values can exceed float16's 65504. The fused
/// <c>com.microsoft</c> operators (MultiHeadAttention, GroupNorm, SkipGroupNorm, SkipLayerNormalization, Gelu, BiasSplitGelu)
/// take float16 directly: their CUDA and DirectML kernels accumulate means, variances and softmax in float32
/// (contrib_ops/cuda/diffusion/group_norm_impl.cu, attention_softmax.h), which is why ONNX Runtime's Stable Diffusion
/// optimizer (optimize_pipeline.py) converts them too. CUDA's SkipLayerNormalization does so only in its strict mode
/// (skip_layer_norm_impl.cu accumulates in the input type otherwise), which the plugin turns on for its CUDA sessions
/// (<c>ExecutionProviderSelector.CudaProviderOptions</c>). GroupNorm's and SkipGroupNorm's gamma and beta are
/// the exception: they stay float32 (Casts of the float16 weights), the only type CUDA's kernel takes for them.</para>
/// <para>Inputs and outputs keep their types: a float32 graph input is cast where a float16 node first reads it, and each
/// output's Identity is a float32 node, so a host feeds and reads float32 as before. Inputs a schema fixes to float32
/// (Resize's roi and scales) are left alone, as are Shape's and Cast's inputs (any type).</para>
/// </remarks>
public static class Float16Compute
{
    /// <summary>Operators that always run in float32 (inputs cast up, output float32).</summary>
    public static IReadOnlySet<string> Fp32Ops { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "InstanceNormalization", "LayerNormalization", "Softmax", "ReduceMean", "Sin", "Cos",
    };

    // Operators whose inputs may be any type and are never converted: Shape reads only the shape, Cast says its target.
    private static readonly HashSet<string> TypeAgnostic = new(StringComparer.Ordinal) { "Shape", "Cast" };

    /// <summary>Rewrites <paramref name="g"/> in place to float16 compute (see the type's remarks).</summary>
    /// <exception cref="InvalidOperationException">the graph does not store float16 weights, or was already rewritten.</exception>
    public static void Apply(OnnxGraph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (!g.Fp16Weights) throw new InvalidOperationException($"graph '{g.Name}': float16 compute needs float16 weights (OnnxGraph.Fp16Weights)");
        if (g.ComputesInFloat16) throw new InvalidOperationException($"graph '{g.Name}' already computes in float16");

        var types = new Dictionary<string, DataType>(StringComparer.Ordinal);
        foreach (var input in g.InputSignatures) types[input.Name] = ParseType(input.ElementType);
        var constants = new Dictionary<string, (TensorProto Tensor, byte[] Data)>(StringComparer.Ordinal);
        foreach (var c in g.Constants)
        {
            constants[c.Tensor.Name] = c;
            types[c.Tensor.Name] = (DataType)c.Tensor.DataType;
        }
        // The weights' Casts to float are dropped: readers of "<name>_fp32" read the float16 initializer "<name>".
        var rename = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (weight, value) in g.WeightValues)
        {
            types[weight] = DataType.Float16;
            if (value != weight) rename[value] = weight;
        }
        var outputs = new HashSet<string>(g.OutputSignatures.Select(o => o.Name), StringComparer.Ordinal);
        var islands = AttentionScoreNodes(g.Nodes);

        var result = new List<NodeProto>(g.Nodes.Count * 5 / 4);
        var converted = new Dictionary<(string Value, DataType To), string>();
        foreach (var source in g.Nodes)
        {
            if (source.OpType == "Cast" && source.Input.Count == 1 && rename.ContainsKey(source.Output[0])) continue;
            var node = source.Clone();
            for (int i = 0; i < node.Input.Count; i++)
                if (rename.TryGetValue(node.Input[i], out string? to)) node.Input[i] = to;

            var floatInputs = new List<int>();
            if (!TypeAgnostic.Contains(node.OpType))
            {
                for (int i = 0; i < node.Input.Count; i++)
                {
                    if (node.Input[i].Length == 0 || FixedFloat32(node.OpType, i)) continue;
                    if (types.TryGetValue(node.Input[i], out var t) && t is DataType.Float or DataType.Float16) floatInputs.Add(i);
                }
            }
            bool fp32 = Fp32Ops.Contains(node.OpType) || islands.Contains(source)
                || (node.OpType == "Identity" && outputs.Contains(node.Output[0]));
            var target = !fp32 && floatInputs.Any(i => types[node.Input[i]] == DataType.Float16) ? DataType.Float16 : DataType.Float;
            foreach (int i in floatInputs)
            {
                string value = node.Input[i];
                var want = GammaBetaOf(node.OpType, i) ? DataType.Float : target;
                if (types[value] == want) continue;
                if (!converted.TryGetValue((value, want), out string? cast))
                {
                    cast = constants.TryGetValue(value, out var constant) && want == DataType.Float16
                        ? ConstantAsFloat16(g, constant)
                        : AddCast(g, result, node, value, want);
                    converted[(value, want)] = cast;
                    types[cast] = want;
                }
                node.Input[i] = cast;
            }
            foreach (string output in node.Output)
                if (output.Length > 0) types[output] = OutputType(node, types);
            result.Add(node);
        }
        g.ReplaceNodesForFloat16(result);
    }

    // Resize(X, roi, scales, sizes): roi and scales are float32 whatever X is (opset 13+ schema: T2 = float16, float, double
    // for roi, tensor(float) for scales); roi is never used here and scales are constants.
    private static bool FixedFloat32(string opType, int input) => opType == "Resize" && input > 0;

    // GroupNorm's and SkipGroupNorm's gamma and beta (inputs 1 and 2) stay float32 in a float16 graph: ORT's CUDA kernel
    // refuses any other type ("GroupNorm only supports gamma and beta in float type", contrib_ops/cuda/diffusion/
    // group_norm.cc), DirectML's casts them to the input's type when they differ (DmlOperatorGroupNorm.cpp), and ORT's own
    // converter keeps them float32 for the same reason (float16.py, ALWAYS_FLOAT_INPUTS).
    private static bool GammaBetaOf(string opType, int input) => opType is "GroupNorm" or "SkipGroupNorm" && input is 1 or 2;

    private static string AddCast(OnnxGraph g, List<NodeProto> result, NodeProto reader, string value, DataType to)
    {
        string scope = reader.Name.LastIndexOf('/') is int slash and > 0 ? reader.Name[..slash] : "";
        string output = $"{value}_{(to == DataType.Float16 ? "fp16" : "fp32")}";
        result.Add(g.NewNode("Cast", scope, [value], [output], OnnxGraph.Attr("to", (long)to)));
        return output;
    }

    private static string ConstantAsFloat16(OnnxGraph g, (TensorProto Tensor, byte[] Data) constant)
    {
        var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(constant.Data);
        return g.ConstFloat16(floats, constant.Tensor.Dims.ToArray());
    }

    // The element type of a node's outputs, from the ONNX schemas of the operators the graph builders use.
    private static DataType OutputType(NodeProto node, Dictionary<string, DataType> types)
    {
        DataType In(int i) => i < node.Input.Count && types.TryGetValue(node.Input[i], out var t) ? t : DataType.Undefined;
        return node.OpType switch
        {
            "Cast" => (DataType)node.Attribute.Single(a => a.Name == "to").I,
            "Shape" or "ArgMax" or "ArgMin" or "NonZero" => DataType.Int64,
            "Equal" or "Greater" or "GreaterOrEqual" or "Less" or "LessOrEqual" or "And" or "Or" or "Not" => DataType.Bool,
            "Where" => In(1),
            _ => In(0),
        };
    }

    // For each Softmax, the attention scores it normalises: an additive mask (Add), the 1/sqrt(d) scale (Mul by a scalar)
    // and the q.k MatMul, walking back from the Softmax's input through the nodes that produce it.
    private static HashSet<NodeProto> AttentionScoreNodes(IReadOnlyList<NodeProto> nodes)
    {
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in nodes)
            foreach (string o in n.Output)
                if (o.Length > 0) producer[o] = n;
        var island = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        foreach (var softmax in nodes.Where(n => n.OpType == "Softmax"))
        {
            string value = softmax.Input[0];
            while (producer.TryGetValue(value, out var p) && p.OpType is "Add" or "Mul" or "MatMul")
            {
                island.Add(p);
                if (p.OpType == "MatMul") break;
                value = p.Input[0];
            }
        }
        return island;
    }

    private static DataType ParseType(string name) => name switch
    {
        "float32" => DataType.Float,
        "float16" => DataType.Float16,
        "int32" => DataType.Int32,
        "int64" => DataType.Int64,
        _ => DataType.Undefined,
    };
}

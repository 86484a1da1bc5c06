using CTCal.Export.Onnx.Proto;

namespace CTCal.Export.Tests;

/// <summary>
/// The <c>com.microsoft</c> contrib-operator schemas the export profiles write, as ONNX Runtime documents them
/// (microsoft/onnxruntime docs/ContribOperators.md: each operator's "Inputs (min - max)", "Outputs (min - max)" and
/// attributes with their types and whether required), and which execution providers have a kernel for each
/// (docs/OperatorKernels.md, the com.microsoft sections of CPUExecutionProvider, CUDAExecutionProvider and
/// DmlExecutionProvider). Used to check the GPU profiles' structure where no GPU is available.
/// </summary>
internal static class ContribSchemas
{
    public sealed record Attribute(AttributeProto.Types.AttributeType Type, bool Required);

    public sealed record Schema(int MinInputs, int MaxInputs, int MinOutputs, int MaxOutputs, IReadOnlyDictionary<string, Attribute> Attributes);

    private static readonly AttributeProto.Types.AttributeType Int = AttributeProto.Types.AttributeType.Int;
    private static readonly AttributeProto.Types.AttributeType Float = AttributeProto.Types.AttributeType.Float;

    public static IReadOnlyDictionary<string, Schema> Schemas { get; } = new Dictionary<string, Schema>
    {
        // MultiHeadAttention: query, key, value, bias, key_padding_mask, attention_bias, past_key, past_value,
        // past_sequence_length, cache_indirection -> output, present_key, present_value, qk
        ["MultiHeadAttention"] = new(1, 10, 1, 4, new Dictionary<string, Attribute>
        {
            ["mask_filter_value"] = new(Float, false), ["num_heads"] = new(Int, true), ["scale"] = new(Float, false), ["unidirectional"] = new(Int, false),
        }),
        // Gelu: X -> Y
        ["Gelu"] = new(1, 1, 1, 1, new Dictionary<string, Attribute>()),
        // SkipLayerNormalization: input, skip, gamma, beta, bias -> output, mean, inv_std_var, input_skip_bias_sum
        ["SkipLayerNormalization"] = new(3, 5, 1, 4, new Dictionary<string, Attribute> { ["epsilon"] = new(Float, false) }),
        // GroupNorm: X, gamma, beta -> Y
        ["GroupNorm"] = new(3, 3, 1, 1, new Dictionary<string, Attribute>
        {
            ["activation"] = new(Int, true), ["channels_last"] = new(Int, false), ["epsilon"] = new(Float, false), ["groups"] = new(Int, true),
        }),
        // SkipGroupNorm: X, gamma, beta, skip, bias -> Y, S
        ["SkipGroupNorm"] = new(4, 5, 1, 2, new Dictionary<string, Attribute>
        {
            ["activation"] = new(Int, true), ["channels_last"] = new(Int, false), ["epsilon"] = new(Float, false), ["groups"] = new(Int, true),
        }),
        // BiasSplitGelu: X, bias -> Y
        ["BiasSplitGelu"] = new(2, 2, 1, 1, new Dictionary<string, Attribute>()),
        // FastGelu: X, bias -> Y
        ["FastGelu"] = new(1, 2, 1, 1, new Dictionary<string, Attribute>()),
    };

    /// <summary>Of the operators above, those each provider implements (OperatorKernels.md).</summary>
    public static IReadOnlyDictionary<ExportOptimization, IReadOnlySet<string>> Kernels { get; } = new Dictionary<ExportOptimization, IReadOnlySet<string>>
    {
        [ExportOptimization.Cpu] = new HashSet<string> { "MultiHeadAttention", "Gelu", "FastGelu", "SkipLayerNormalization" },
        [ExportOptimization.Cuda] = new HashSet<string> { "MultiHeadAttention", "Gelu", "FastGelu", "SkipLayerNormalization", "GroupNorm", "SkipGroupNorm", "BiasSplitGelu" },
        [ExportOptimization.DirectML] = new HashSet<string> { "MultiHeadAttention", "Gelu", "SkipLayerNormalization", "GroupNorm", "BiasSplitGelu" },
    };

    /// <summary>Every problem of <paramref name="nodes"/>' com.microsoft nodes against the schemas and <paramref name="profile"/>'s kernels.</summary>
    public static List<string> Problems(IEnumerable<NodeProto> nodes, ExportOptimization profile)
    {
        var problems = new List<string>();
        foreach (var n in nodes.Where(n => n.Domain == "com.microsoft"))
        {
            if (!Schemas.TryGetValue(n.OpType, out var s))
            {
                problems.Add($"{n.Name}: {n.OpType} is not in the schema table");
                continue;
            }
            if (!Kernels[profile].Contains(n.OpType)) problems.Add($"{n.Name}: {n.OpType} has no {profile} kernel");
            // trailing empty names are omitted optional inputs/outputs; count up to the last named one
            int inputs = n.Input.Count - n.Input.Reverse().TakeWhile(i => i.Length == 0).Count();
            int outputs = n.Output.Count - n.Output.Reverse().TakeWhile(o => o.Length == 0).Count();
            if (inputs < s.MinInputs || n.Input.Count > s.MaxInputs) problems.Add($"{n.Name}: {n.Input.Count} inputs, schema {s.MinInputs}-{s.MaxInputs}");
            if (outputs < s.MinOutputs || n.Output.Count > s.MaxOutputs) problems.Add($"{n.Name}: {n.Output.Count} outputs, schema {s.MinOutputs}-{s.MaxOutputs}");
            if (n.Input.Take(s.MinInputs).Any(i => i.Length == 0)) problems.Add($"{n.Name}: a required input is empty");
            foreach (var a in n.Attribute)
            {
                if (!s.Attributes.TryGetValue(a.Name, out var spec)) problems.Add($"{n.Name}: unknown attribute {a.Name}");
                else if (spec.Type != a.Type) problems.Add($"{n.Name}: attribute {a.Name} is {a.Type}, schema {spec.Type}");
            }
            foreach (var (name, spec) in s.Attributes)
                if (spec.Required && n.Attribute.All(a => a.Name != name)) problems.Add($"{n.Name}: required attribute {name} missing");
        }
        return problems;
    }
}

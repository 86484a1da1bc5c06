using CTCal.Export.Onnx;
using CTCal.Tests;
using CTCal.Export.Onnx.Proto;
using Google.Protobuf;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Tests;

/// <summary>
/// The cuda and directml profiles' wiring, checked on CPU: every node of theirs that the CPU provider has no kernel for
/// (GroupNorm, SkipGroupNorm, BiasSplitGelu) is replaced by the formula ONNX Runtime's ContribOperators.md gives for it, in
/// standard operators, and the whole exported graph (UNet, VAE decoder and encoder) then runs in the CPU provider and
/// matches the plain export within 1e-4.
/// What this catches that the schema checks cannot: a wrong layout (NHWC vs NCHW around the norms), a skip or gamma on the
/// wrong input, a missing SiLU. What it cannot catch: a GPU kernel that departs from its documented formula.
/// </summary>
public sealed class GpuProfileReferenceTests
{
    [Theory]
    [InlineData("tiny-sd1", ExportOptimization.Cuda)]
    [InlineData("tiny-sd1", ExportOptimization.DirectML)]
    [InlineData("tiny-sd2-style", ExportOptimization.Cuda)]
    public void Gpu_profile_with_its_gpu_only_nodes_written_out_matches_the_plain_graph(string fixture, ExportOptimization profile)
    {
        string root = TestModels.NewRoot();
        try
        {
            string plain = OptimizeProfileTests.Export(fixture, root, ExportOptimization.Plain, Parts);
            string gpu = OptimizeProfileTests.Export(fixture, root, profile, Parts);
            foreach (string part in new[] { "unet", "vae_decoder", "vae_encoder" })
            {
                var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(gpu, part, "model.onnx")));
                var replaced = ReplaceGpuOnlyNodes(model.Graph);
                Assert.True(replaced.GetValueOrDefault("GroupNorm") > 0, $"{part}: no GroupNorm written out");
                if (part == "unet" && profile == ExportOptimization.Cuda) Assert.True(replaced.GetValueOrDefault("SkipGroupNorm") > 0, "unet: no SkipGroupNorm");
                if (part == "unet" && profile == ExportOptimization.DirectML) Assert.True(replaced.GetValueOrDefault("BiasSplitGelu") > 0, "unet: no BiasSplitGelu");
                string reference = Path.Combine(gpu, part, "reference.onnx"); // beside model.onnx, so its external data resolves
                File.WriteAllBytes(reference, model.ToByteArray());
                OptimizeProfileTests.AssertMatchesPlain(Path.Combine(plain, part, "model.onnx"), reference, seed: 11, $"{fixture} {profile} {part}");
            }
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void A_miswired_skip_group_norm_is_caught()
    {
        // the check above must fail when the fused graph is wrong: SkipGroupNorm with its SiLU turned off
        string root = TestModels.NewRoot();
        try
        {
            string plain = OptimizeProfileTests.Export("tiny-sd1", root, ExportOptimization.Plain, Parts);
            string gpu = OptimizeProfileTests.Export("tiny-sd1", root, ExportOptimization.Cuda, Parts);
            var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(gpu, "unet", "model.onnx")));
            var node = model.Graph.Node.First(n => n.OpType == "SkipGroupNorm");
            node.Attribute.Single(a => a.Name == "activation").I = 0;
            ReplaceGpuOnlyNodes(model.Graph);
            string reference = Path.Combine(gpu, "unet", "reference.onnx");
            File.WriteAllBytes(reference, model.ToByteArray());
            using var a = new OrtRunner(Path.Combine(plain, "unet", "model.onnx"));
            using var b = new OrtRunner(reference);
            var inputs = OptimizeProfileTests.Inputs(a.Session, seed: 11);
            float diff = OrtRunner.MaxAbsDiff(b.Run(inputs).Single().Value.Data, a.Run(inputs).Single().Value.Data);
            Assert.True(diff > 1e-3f, $"a SkipGroupNorm without its SiLU changed the output by only {diff}");
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    private const ExportComponents Parts = ExportComponents.Unet | ExportComponents.VaeDecoder | ExportComponents.VaeEncoder;

    /// <summary>Replaces GroupNorm, SkipGroupNorm and BiasSplitGelu in place; returns how many of each.</summary>
    internal static Dictionary<string, int> ReplaceGpuOnlyNodes(GraphProto graph)
    {
        var counts = new Dictionary<string, int>();
        var nodes = graph.Node.ToList();
        graph.Node.Clear();
        int k = 0;
        foreach (var n in nodes)
        {
            var b = new Builder(graph, $"ref{k++}");
            switch (n.OpType)
            {
                case "GroupNorm" when n.Domain == OnnxGraph.ContribDomain:
                    b.GroupNormNhwc(n.Input[0], n.Input[1], n.Input[2], n, n.Output[0]);
                    break;
                case "SkipGroupNorm" when n.Domain == OnnxGraph.ContribDomain:
                {
                    // s = x + skip + bias, skip (N, H, W, C), (N, 1, 1, C) or (N, C)
                    string skip = n.Input[3];
                    if (b.Rank(skip) == 2) skip = b.Node("Unsqueeze", [skip, b.Int64s(1, 2)]); // (N, C) -> (N, 1, 1, C)
                    string s = b.Node("Add", [n.Input[0], skip]);
                    if (n.Input.Count > 4 && n.Input[4].Length > 0) s = b.Node("Add", [s, n.Input[4]]);
                    if (n.Output.Count > 1 && n.Output[1].Length > 0) b.Node("Identity", [s], n.Output[1]);
                    b.GroupNormNhwc(s, n.Input[1], n.Input[2], n, n.Output[0]);
                    break;
                }
                case "BiasSplitGelu" when n.Domain == OnnxGraph.ContribDomain:
                {
                    // Y = left * Gelu(right), [left, right] = split(X + bias) on the last axis
                    string x = b.Node("Add", [n.Input[0], n.Input[1]]);
                    string left = b.Name("left"), right = b.Name("right");
                    graph.Node.Add(new NodeProto { OpType = "Split", Name = b.Name("Split"), Input = { x }, Output = { left, right }, Attribute = { Int("axis", -1) } });
                    string gelu = b.Node("Gelu", [right], domain: OnnxGraph.ContribDomain);
                    b.Node("Mul", [left, gelu], n.Output[0]);
                    break;
                }
                default:
                    graph.Node.Add(n);
                    continue;
            }
            counts[n.OpType] = counts.GetValueOrDefault(n.OpType) + 1;
        }
        return counts;
    }

    private static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private sealed class Builder(GraphProto graph, string prefix)
    {
        private int _next;

        public string Name(string what) => $"{prefix}/{what}{_next++}";

        public string Node(string op, string[] inputs, string? output = null, string domain = "", AttributeProto? attribute = null)
        {
            output ??= Name(op + "_out");
            var node = new NodeProto { OpType = op, Name = Name(op), Domain = domain, Input = { inputs }, Output = { output } };
            if (attribute is not null) node.Attribute.Add(attribute);
            graph.Node.Add(node);
            return output;
        }

        public string Int64s(params long[] values) => Constant(DataType.Int64, values.SelectMany(BitConverter.GetBytes).ToArray(), values.Length);

        public string Floats(float value, long count) =>
            Constant(DataType.Float, Enumerable.Repeat(value, (int)count).SelectMany(BitConverter.GetBytes).ToArray(), count);

        private string Constant(DataType type, byte[] data, long count)
        {
            string name = Name("const");
            graph.Initializer.Add(new TensorProto { Name = name, DataType = (int)type, Dims = { count }, RawData = ByteString.CopyFrom(data) });
            return name;
        }

        // the rank of a SkipGroupNorm skip, from the node that produced it: the exporter writes a Gemm's [B, C] (2-D) or an
        // NHWC value (a Transpose, 4-D)
        public int Rank(string value) => graph.Node.Last(n => n.Output.Contains(value)).OpType switch
        {
            "Gemm" => 2,
            "Transpose" => 4,
            var op => throw new InvalidOperationException($"SkipGroupNorm skip '{value}' comes from a {op}: rank unknown here"),
        };

        // ContribOperators.md GroupNorm with channels_last 1: y = gamma * (x - mean) / sqrt(variance + epsilon) + beta per
        // group of channels, then x * sigmoid(x) when activation is 1; written as the plain export's GroupNorm (NCHW,
        // InstanceNormalization over [B, G, C/G*H*W]) between Transposes
        public void GroupNormNhwc(string x, string gamma, string beta, NodeProto attrs, string output)
        {
            long groups = attrs.Attribute.Single(a => a.Name == "groups").I;
            float eps = attrs.Attribute.SingleOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
            bool silu = attrs.Attribute.Single(a => a.Name == "activation").I == 1;
            Assert.Equal(1L, attrs.Attribute.Single(a => a.Name == "channels_last").I);
            string nchw = Node("Transpose", [x], attribute: new AttributeProto { Name = "perm", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 0, 3, 1, 2 } });
            string shape = Node("Shape", [nchw]);
            string grouped = Node("Reshape", [nchw, Int64s(0, groups, -1)]);
            string normed = Node("InstanceNormalization", [grouped, Floats(1f, groups), Floats(0f, groups)],
                attribute: new AttributeProto { Name = "epsilon", Type = AttributeProto.Types.AttributeType.Float, F = eps });
            string back = Node("Reshape", [normed, shape]);
            string y = Node("Add", [Node("Mul", [back, Node("Unsqueeze", [gamma, Int64s(1, 2)])]), Node("Unsqueeze", [beta, Int64s(1, 2)])]);
            if (silu) y = Node("Mul", [y, Node("Sigmoid", [y])]);
            Node("Transpose", [y], output, attribute: new AttributeProto { Name = "perm", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 0, 2, 3, 1 } });
        }
    }
}

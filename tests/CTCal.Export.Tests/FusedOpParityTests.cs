using CTCal.Export.Decoder;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Tests;

/// <summary>
/// Each CPU-runnable fusion on its own, plain vs <see cref="ExportOptimization.Cpu"/>, through ONNX Runtime, with inputs
/// large enough that the fused op's details matter (peaked softmax, GELU's tails, LayerNorm of an unnormalized sum): the
/// whole-model parity of the random tiny UNet is a weak check of attention alone, since its near-uniform attention barely
/// depends on the softmax scale.
/// </summary>
public sealed class FusedOpParityTests
{
    private const long Heads = 4, HeadDim = 8, Channels = Heads * HeadDim;

    private static float[] Random(int seed, int n, float range)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (rng.NextSingle() * 2 - 1) * range).ToArray();
    }

    // Builds the graph with build(graph) -> outputs, writes it with the given weights, runs it on inputs.
    private static List<float[]> Run(FusedOps fused, Func<OnnxGraph, string[]> build, Dictionary<string, float[]> weights,
        params (string Name, Array Data, long[] Shape)[] inputs)
    {
        var g = new OnnxGraph("op", fp16Weights: false, fused);
        string[] outputs = build(g);
        for (int i = 0; i < outputs.Length; i++) g.Output(outputs[i], $"y{i}", DataType.Float, "n", "d");
        string root = TestModels.NewRoot();
        try
        {
            OnnxModelWriter.Write(g, new InMemoryWeights(weights), root, OnnxModelWriter.DefaultExternalDataThreshold);
            using var ort = new OrtRunner(Path.Combine(root, OnnxModelWriter.ModelFileName));
            var result = ort.Run(inputs);
            return Enumerable.Range(0, outputs.Length).Select(i => result[$"y{i}"].Data).ToList();
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    // The fused form is the cpu profile's unless another set is given (a GPU profile's fusion that the CPU provider also runs).
    private static void AssertSame(Func<OnnxGraph, string[]> build, Dictionary<string, float[]> weights, string fusedOp,
        params (string Name, Array Data, long[] Shape)[] inputs) =>
        AssertSame(FusedOps.For(ExportOptimization.Cpu), build, weights, fusedOp, OnnxGraph.ContribDomain, inputs);

    private static void AssertSame(FusedOps fusedOps, Func<OnnxGraph, string[]> build, Dictionary<string, float[]> weights, string fusedOp,
        string fusedDomain, params (string Name, Array Data, long[] Shape)[] inputs)
    {
        var plain = Run(FusedOps.None, build, weights, inputs);
        var fused = Run(fusedOps, build, weights, inputs);
        for (int i = 0; i < plain.Count; i++)
        {
            float diff = OrtRunner.MaxAbsDiff(fused[i], plain[i]);
            float scale = Math.Max(1f, OrtRunner.MaxAbs(plain[i]));
            Assert.True(diff <= 1e-4f * scale, $"{fusedOp} output {i}: differs by {diff} (max |plain| {OrtRunner.MaxAbs(plain[i])})");
        }
        var g = new OnnxGraph("probe", false, fusedOps);
        build(g);
        Assert.Contains(g.Nodes, n => n.OpType == fusedOp && n.Domain == fusedDomain);
    }

    [Theory]
    [InlineData(50, 50)] // self-attention
    [InlineData(50, 77)] // cross-attention: another key length
    public void Attention_as_multi_head_attention_matches(int queries, int keys)
    {
        string[] Build(OnnxGraph g)
        {
            string q = g.Input("q", DataType.Float, "batch", "sq", Channels);
            string k = g.Input("k", DataType.Float, "batch", "sk", Channels);
            string v = g.Input("v", DataType.Float, "batch", "sk", Channels);
            string batch = g.ShapeOf(q, 0, 1);
            string o = g.Attention(g.Reshape(q, -1, Channels), g.Reshape(k, -1, Channels), g.Reshape(v, -1, Channels), batch, Heads, HeadDim); // [B*Sq, C]
            return [o];
        }
        // |q.k| / sqrt(d) up to ~30: a peaked softmax, so the scale and the per-head split must be exactly diffusers'
        AssertSame(Build, [], "MultiHeadAttention",
            ("q", Random(1, 2 * queries * (int)Channels, 2f), [2, queries, Channels]),
            ("k", Random(2, 2 * keys * (int)Channels, 2f), [2, keys, Channels]),
            ("v", Random(3, 2 * keys * (int)Channels, 1f), [2, keys, Channels]));
    }

    [Fact]
    public void Gelu_as_contrib_gelu_matches_the_erf_form()
    {
        AssertSame(g => [g.Gelu(g.Input("x", DataType.Float, "n", "d"))], [], "Gelu",
            ("x", Random(4, 64 * 40, 8f), [64, 40]));
    }

    [Fact]
    public void Tanh_gelu_as_fast_gelu_matches_the_tanh_chain()
    {
        AssertSame(g => [SD3Blocks.GeluTanh(g, g.Input("x", DataType.Float, "n", "d"))], [], "FastGelu",
            ("x", Random(6, 64 * 40, 8f), [64, 40]));
    }

    [Fact]
    public void Residual_add_and_layer_norm_as_skip_layer_normalization_match()
    {
        const long dim = 40;
        var weights = new Dictionary<string, float[]> { ["ln.weight"] = Random(5, (int)dim, 2f), ["ln.bias"] = Random(6, (int)dim, 1f) };
        string[] Build(OnnxGraph g)
        {
            var (sum, normed) = g.AddLayerNorm(g.Input("r", DataType.Float, "n", "d"), g.Input("x", DataType.Float, "n", "d"), "ln", dim, 1e-5);
            return [sum, normed];
        }
        // the cuda and directml profiles' fusion (the cpu profile leaves it out as slower there; ORT's CPU kernel still runs it)
        AssertSame(new FusedOps { SkipLayerNormalization = true }, Build, weights, "SkipLayerNormalization", OnnxGraph.ContribDomain,
            ("r", Random(7, 64 * (int)dim, 5f), [64, dim]), ("x", Random(8, 64 * (int)dim, 3f), [64, dim]));
    }

    [Fact]
    public void Geglu_as_two_half_gemms_matches_the_split_form()
    {
        const long dim = 16, inner = 4 * dim;
        var weights = new Dictionary<string, float[]>
        {
            ["ff.net.0.proj.weight"] = Random(9, (int)(2 * inner * dim), 0.5f),
            ["ff.net.0.proj.bias"] = Random(10, (int)(2 * inner), 0.5f),
            ["ff.net.2.weight"] = Random(11, (int)(dim * inner), 0.2f),
            ["ff.net.2.bias"] = Random(12, (int)dim, 0.2f),
        };
        string[] Build(OnnxGraph g)
        {
            string x = g.Input("x", DataType.Float, "n", "d");
            return [UNetBlocks.FeedForward(g, x, g.ShapeOf(x, 0, 1), "ff", dim)];
        }
        // half of the gate values negative and large enough that the erf tail matters
        AssertSame(FusedOps.For(ExportOptimization.Cpu), Build, weights, "Slice", "", ("x", Random(13, 24 * (int)dim, 3f), [24, dim]));
        var split = new OnnxGraph("probe", false, FusedOps.None);
        Build(split);
        Assert.Contains(split.Nodes, n => n.OpType == "Split");
        var halves = new OnnxGraph("probe", false, FusedOps.For(ExportOptimization.Cpu));
        Build(halves);
        Assert.DoesNotContain(halves.Nodes, n => n.OpType == "Split");
        Assert.Equal(2, halves.Nodes.Count(n => n.OpType == "Gemm" && n.Input[1].Contains("Slice", StringComparison.Ordinal)));
    }
}

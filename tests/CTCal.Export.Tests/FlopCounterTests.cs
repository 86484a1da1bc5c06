using CTCal.Bench.Inference;
using CTCal.Export.Decoder;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Tests;

/// <summary>
/// The inference bench's FLOP counter (bench/CTCal.Bench.Inference/FlopCounter.cs, compiled in here) on graphs whose
/// multiply-adds are worked out by hand: the figure the bench divides by the GEMM peak.
/// </summary>
public sealed class FlopCounterTests
{
    private static float[] Random(int seed, long n)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, checked((int)n)).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
    }

    /// <summary>
    /// A graph of every counted ONNX operator kind the exporter writes, run once by ONNX Runtime with profiling:
    /// Conv 3->4 channels, 3x3, 8x8 output: 2 x (4 x 8 x 8) x (3 x 3 x 3) = 13,824; Conv 4->4 in 2 groups, 1x1:
    /// 2 x 256 x 2 = 1,024; MatMul [2, 5, 6] x [6, 7]: 2 x 70 x 6 = 840; Gemm [3, 6] x [7, 6]^T: 2 x 21 x 6 = 252;
    /// MultiHeadAttention query [2, 5, 16], key and value [2, 9, 16]: QK^T and AV, 2 x 2 x 5 x 9 x (16 + 16) = 5,760.
    /// The Add and Identity nodes are not counted. The profile file is left nowhere.
    /// </summary>
    [Fact]
    public void CountsTheMultiplyAddsOfAGraphWorkedOutByHand()
    {
        var g = new OnnxGraph("flops", fp16Weights: false);
        string x = g.Input("x", DataType.Float, 1L, 3L, 8L, 8L);
        string conv = g.Op("Conv", [x, g.Weight("conv.weight", 4, 3, 3, 3)], null, OnnxGraph.Attr("pads", 1, 1, 1, 1));
        string grouped = g.Op("Conv", [conv, g.Weight("grouped.weight", 4, 2, 1, 1)], null, OnnxGraph.Attr("group", 2L));
        g.Output(grouped, "y0", DataType.Float, 1L, 4L, 8L, 8L);
        string a = g.Input("a", DataType.Float, 2L, 5L, 6L);
        string b = g.Input("b", DataType.Float, 6L, 7L);
        g.Output(g.Op("Add", [g.Op("MatMul", [a, b]), g.ConstFloat([1f], 1)]), "y1", DataType.Float, 2L, 5L, 7L);
        string ga = g.Input("ga", DataType.Float, 3L, 6L);
        string gb = g.Input("gb", DataType.Float, 7L, 6L);
        g.Output(g.Op("Gemm", [ga, gb], null, OnnxGraph.Attr("transB", 1L)), "y2", DataType.Float, 3L, 7L);
        string q = g.Input("q", DataType.Float, 2L, 5L, 16L);
        string k = g.Input("k", DataType.Float, 2L, 9L, 16L);
        string v = g.Input("v", DataType.Float, 2L, 9L, 16L);
        g.Output(g.ContribOp("MultiHeadAttention", [q, k, v], OnnxGraph.Attr("num_heads", 2L)), "y3", DataType.Float, 2L, 5L, 16L);

        string root = TestModels.NewRoot();
        try
        {
            var weights = new Dictionary<string, float[]> { ["conv.weight"] = Random(1, 108), ["grouped.weight"] = Random(2, 8) };
            OnnxModelWriter.Write(g, new InMemoryWeights(weights), root, OnnxModelWriter.DefaultExternalDataThreshold);
            (string, float[], long[])[] inputs =
            [
                ("x", Random(3, 192), [1, 3, 8, 8]), ("a", Random(4, 60), [2, 5, 6]), ("b", Random(5, 42), [6, 7]),
                ("ga", Random(6, 18), [3, 6]), ("gb", Random(7, 42), [7, 6]),
                ("q", Random(8, 160), [2, 5, 16]), ("k", Random(9, 288), [2, 9, 16]), ("v", Random(10, 288), [2, 9, 16]),
            ];
            int ProfilesHere() => Directory.EnumerateFiles(Environment.CurrentDirectory, "*profile*.json").Count();
            int profilesBefore = ProfilesHere();
            using var options = new Microsoft.ML.OnnxRuntime.SessionOptions();
            var ops = FlopCounter.Count(Path.Combine(root, OnnxModelWriter.ModelFileName), options, inputs).ToDictionary(o => o.Op);
            Assert.Equal(profilesBefore, ProfilesHere()); // the profile went to a temporary folder, not the working directory

            Assert.Equal(["Conv", "Gemm", "MatMul", "MultiHeadAttention"], ops.Keys.Order().ToArray());
            Assert.Equal((2, 13_824.0 + 1_024.0), (ops["Conv"].Nodes, ops["Conv"].Flops));
            Assert.Equal((1, 840.0), (ops["MatMul"].Nodes, ops["MatMul"].Flops));
            Assert.Equal((1, 252.0), (ops["Gemm"].Nodes, ops["Gemm"].Flops));
            Assert.Equal((1, 5_760.0), (ops["MultiHeadAttention"].Nodes, ops["MultiHeadAttention"].Flops));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    /// <summary>
    /// The fused kinds ONNX Runtime's optimizer writes, from a profile's shapes: NchwcConv 2 x |Y| x |W| / W[0]; FusedMatMul
    /// with A transposed (K is then A's second to last dimension); packed-QKV MultiHeadAttention [B, S, N, 3, H]; Attention
    /// with its QKV projection; fence events and uncounted operators are skipped.
    /// </summary>
    [Fact]
    public void ReadsTheShapesOfFusedOperatorsFromAProfile()
    {
        const string profile = """
        [
          {"cat": "Session", "name": "model_run", "args": {}},
          {"cat": "Node", "name": "c_fence_before", "args": {"op_name": "NchwcConv"}},
          {"cat": "Node", "name": "c_kernel_time", "args": {"op_name": "NchwcConv",
            "input_type_shape": [{"float": [1, 16, 4, 4]}, {"float": [8, 16, 3, 3]}, {}], "output_type_shape": [{"float": [1, 8, 4, 4]}]}},
          {"cat": "Node", "name": "m_kernel_time", "args": {"op_name": "FusedMatMul",
            "input_type_shape": [{"float": [6, 5]}, {"float": [6, 7]}], "output_type_shape": [{"float": [5, 7]}]}},
          {"cat": "Node", "name": "p_kernel_time", "args": {"op_name": "MultiHeadAttention",
            "input_type_shape": [{"float": [2, 10, 4, 3, 8]}], "output_type_shape": [{"float": [2, 10, 32]}]}},
          {"cat": "Node", "name": "a_kernel_time", "args": {"op_name": "Attention",
            "input_type_shape": [{"float": [1, 4, 12]}, {"float": [12, 36]}, {"float": [36]}], "output_type_shape": [{"float": [1, 4, 12]}]}},
          {"cat": "Node", "name": "s_kernel_time", "args": {"op_name": "Softmax",
            "input_type_shape": [{"float": [2, 3]}], "output_type_shape": [{"float": [2, 3]}]}}
        ]
        """;
        var ops = FlopCounter.FromProfile(profile).ToDictionary(o => o.Op, o => o.Flops);
        Assert.Equal(4, ops.Count);
        Assert.Equal(2.0 * 128 * (16 * 9), ops["NchwcConv"]);
        Assert.Equal(2.0 * 35 * 6, ops["FusedMatMul"]);
        Assert.Equal(2.0 * 2 * 10 * 10 * (32 + 32), ops["MultiHeadAttention"]);
        Assert.Equal(2.0 * 4 * 12 * 36 + 2.0 * 4 * 4 * (2 * 12), ops["Attention"]);

        // the element counter takes the softmax (one exp per output element) and nothing it does not count
        var elements = Assert.Single(FlopCounter.ElementsFromProfile(profile));
        Assert.Equal(new OpElements("Softmax", 1, 6), elements);
    }

    /// <summary>
    /// The two FLOP counts of the project agree on a real export: the exporter's walk (<see cref="UNetGraph.Flops"/>, the
    /// manifest's <c>fullStepGflops</c> / <c>shallowStepGflops</c>) and the bench's count from ONNX Runtime's profile of the
    /// exported graph, for the full UNet and the step-cache shallow UNet of tiny-sd1 (batch 1, 16x16 latent, 77 tokens).
    /// </summary>
    [Fact]
    public void The_exporters_unet_walk_and_the_profile_count_agree_on_the_full_and_shallow_unet()
    {
        string fixture = Path.Combine(CTCal.Tests.TestPaths.Fixtures, "tiny-sd1");
        string folder = Path.Combine(Path.GetTempPath(), $"ctcal-flops-unet-{Guid.NewGuid():N}");
        try
        {
            OnnxExporter.Export(new ExportOptions { ModelFolder = fixture, OutputFolder = folder, StepCacheBranch = 2 });
            var config = CTCal.Core.Diffusers.UNetConfig.Load(Path.Combine(fixture, "unet", "config.json"));
            var cache = CTCal.Core.Models.OnnxModelManifest.TryRead(folder)!.StepCache!;
            (string, float[], long[])[] inputs =
            [
                ("sample", Random(1, 4 * 16 * 16), [1, 4, 16, 16]), ("timestep", [500f], [1]), ("encoder_hidden_states", Random(2, 77 * config.CrossAttentionDim), [1, 77, config.CrossAttentionDim]),
            ];
            double Profiled(string graph, params (string, float[], long[])[] extra)
            {
                using var options = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = 1 };
                return FlopCounter.Count(Path.Combine(folder, graph), options, [.. inputs, .. extra]).Sum(o => o.Flops);
            }

            double full = Profiled("unet/model.onnx");
            Assert.Equal(UNetGraph.Flops(config, 16, 16, 77), full, 1e-6 * full);
            long[] featureShape = cache.FeatureShape(1, 16, 16);
            double shallow = Profiled("unet_shallow/model.onnx", ("deep_feature", Random(3, featureShape.Aggregate(1L, (a, b) => a * b)), featureShape));
            Assert.Equal(UNetGraph.Flops(config, 16, 16, 77, cache.Branch, shallow: true), shallow, 1e-6 * shallow);
            Assert.InRange(shallow, 1e6, full * 0.9);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }

    /// <summary>
    /// The transcendental elements of a plain graph's profile: attention's Softmax over [B, h, S, L], GELU's Erf and SiLU's
    /// Sigmoid, summed per operator over the node runs; the MatMuls around them are FLOPs, not elements.
    /// </summary>
    [Fact]
    public void CountsTheElementsOfExpClassOperatorsInARealProfile()
    {
        var g = new OnnxGraph("elements", fp16Weights: false);
        string q = g.Input("q", DataType.Float, 2L, 4L, 6L, 8L);
        string k = g.Input("k", DataType.Float, 2L, 4L, 8L, 5L);
        string probs = g.Op("Softmax", [g.Op("MatMul", [q, k])], null, OnnxGraph.Attr("axis", -1L)); // [2, 4, 6, 5]
        g.Output(probs, "p", DataType.Float, 2L, 4L, 6L, 5L);
        string x = g.Input("x", DataType.Float, 3L, 7L);
        g.Output(g.Op("Erf", [x]), "e", DataType.Float, 3L, 7L);
        g.Output(g.Op("Mul", [x, g.Op("Sigmoid", [x])]), "s", DataType.Float, 3L, 7L);
        string folder = Path.Combine(Path.GetTempPath(), $"ctcal-elements-{Guid.NewGuid():N}");
        try
        {
            OnnxModelWriter.Write(g, new InMemoryWeights(new Dictionary<string, float[]>()), folder, OnnxModelWriter.DefaultExternalDataThreshold);
            using var options = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = 1 };
            string json = FlopCounter.Profile(Path.Combine(folder, OnnxModelWriter.ModelFileName), options,
                [("q", Random(1, 2 * 4 * 6 * 8), [2, 4, 6, 8]), ("k", Random(2, 2 * 4 * 8 * 5), [2, 4, 8, 5]), ("x", Random(3, 21), [3, 7])]);
            var elements = FlopCounter.ElementsFromProfile(json).ToDictionary(o => o.Op, o => o.Elements);
            Assert.Equal(3, elements.Count);
            Assert.Equal(2 * 4 * 6 * 5, elements["Softmax"]);
            Assert.Equal(21, elements["Erf"]);
            Assert.Equal(21, elements["Sigmoid"]);
            Assert.Equal(2.0 * (2 * 4 * 6 * 5) * 8, FlopCounter.FromProfile(json).Single().Flops);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }
}

using CTCal.Core.Models;
using CTCal.Export.Onnx;
using CTCal.Export.Onnx.Proto;
using CTCal.Tests;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Tests;

/// <summary>
/// <see cref="ExportPrecision.Fp16"/> (float16 compute, <see cref="Float16Compute"/>) against the float32 export of the same
/// folder, every graph through ONNX Runtime's CPU provider (which runs float16 nodes without a float16 kernel between
/// inserted Casts, so the error measured is float16 storage of weights and activations, not float16 accumulation).
/// </summary>
public sealed class Fp16ComputeTests(Xunit.Abstractions.ITestOutputHelper log)
{
    /// <summary>
    /// Max |fp16 - fp32| over max(1, max |fp32|) allowed per output. float16 keeps 11 significant bits (unit roundoff
    /// 2^-11 = 4.9e-4); a graph rounds its activations at every node, so errors of a few roundoffs per layer accumulate.
    /// Measured on these folders: at most 1.7e-3 (tiny-sd1's VAE decoder; the exporter README lists them); the bound leaves
    /// 3x margin and is 200 times below the outputs' own scale.
    /// </summary>
    private const float Tolerance = 5e-3f;

    public static TheoryData<string, ExportOptimization> Folders => new()
    {
        { "tests/data/fixtures/tiny-sd1", ExportOptimization.Plain },
        { "tests/data/fixtures/tiny-sd2-style", ExportOptimization.Plain },
        { "assets/base-model", ExportOptimization.Plain },
        { "assets/base-model", ExportOptimization.Cpu },
        { "tests/data/sd3-base", ExportOptimization.Plain },
        { "tests/data/sd3-base", ExportOptimization.Cpu },
    };

    private static string Export(string folder, string root, ExportPrecision precision, ExportOptimization profile = ExportOptimization.Plain)
    {
        string output = Path.Combine(root, $"{ExportPrecisionNames.Name(precision)}-{ExportOptimizationNames.Name(profile)}");
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = Path.Combine(TestPaths.RepoRoot, folder), OutputFolder = output, Precision = precision, Optimize = profile,
        });
        return output;
    }

    // Seeded inputs from the session's metadata: batch 2, sequence 8, every other symbolic dim 16; timesteps in [0, 1000),
    // token ids in [0, 500), other floats in [-1, 1).
    private static List<NamedOnnxValue> Inputs(InferenceSession session, int seed)
    {
        var rng = new Random(seed);
        return session.InputMetadata.Select(kv =>
        {
            var meta = kv.Value;
            int[] shape = meta.Dimensions.Select((d, i) => d >= 0 ? d : meta.SymbolicDimensions[i] switch
            {
                "batch" => 2,
                "sequence" => 8,
                _ => 16,
            }).ToArray();
            int n = shape.Aggregate(1, (a, b) => a * b);
            if (meta.ElementType == typeof(int))
                return NamedOnnxValue.CreateFromTensor(kv.Key, new DenseTensor<int>(Enumerable.Range(0, n).Select(_ => rng.Next(500)).ToArray(), shape));
            bool timestep = kv.Key == "timestep";
            var data = Enumerable.Range(0, n).Select(_ => timestep ? rng.NextSingle() * 1000f : rng.NextSingle() * 2 - 1).ToArray();
            return NamedOnnxValue.CreateFromTensor(kv.Key, new DenseTensor<float>(data, shape));
        }).ToList();
    }

    private static InferenceSession Session(string path)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1 };
        return new InferenceSession(path, options);
    }

    [Theory]
    [MemberData(nameof(Folders))]
    public void Fp16_parity_every_graph_matches_the_fp32_export_within_tolerance(string folder, ExportOptimization profile)
    {
        string root = TestModels.NewRoot();
        try
        {
            string fp32 = Export(folder, root, ExportPrecision.Fp32, profile);
            string fp16 = Export(folder, root, ExportPrecision.Fp16, profile);
            var parts = Directory.GetDirectories(fp32).Where(d => File.Exists(Path.Combine(d, "model.onnx"))).Select(Path.GetFileName).ToList();
            Assert.NotEmpty(parts);
            foreach (string part in parts!)
            {
                using var a = Session(Path.Combine(fp32, part!, "model.onnx"));
                using var b = Session(Path.Combine(fp16, part!, "model.onnx"));
                var inputs = Inputs(a, seed: part!.Length);
                Assert.All(b.InputMetadata.Values.Concat(b.OutputMetadata.Values), m => Assert.NotEqual(typeof(Half), m.ElementType));
                using var expected = a.Run(inputs);
                using var actual = b.Run(inputs);
                foreach (var e in expected)
                {
                    var x = e.AsTensor<float>().ToArray();
                    var y = actual.Single(r => r.Name == e.Name).AsTensor<float>().ToArray();
                    float max = OrtRunner.MaxAbs(x);
                    float diff = OrtRunner.MaxAbsDiff(y, x);
                    float relative = diff / Math.Max(1f, max);
                    log.WriteLine($"{folder} {ExportOptimizationNames.Name(profile)} {part}.{e.Name}: max |fp16 - fp32| {diff:G3}, max |fp32| {max:G3}, relative {relative:G3}");
                    Assert.True(max > 0f, $"{part}.{e.Name}: fp32 output is all zeros");
                    Assert.True(diff > 0f, $"{part}.{e.Name}: the fp16 export computes exactly like fp32, so it does not compute in float16");
                    Assert.True(y.All(float.IsFinite), $"{part}.{e.Name}: fp16 output has a non-finite value");
                    Assert.True(relative <= Tolerance, $"{folder} {part}.{e.Name}: fp16 differs from fp32 by {diff} (max |fp32| {max}), relative {relative} > {Tolerance}");
                }
            }
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    private static ModelProto Load(string folder, string part) =>
        ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(folder, part, "model.onnx")));

    /// <summary>
    /// The element type of every value of <paramref name="graph"/>: initializers and inputs as declared, node outputs by the
    /// ONNX schemas' type rules (Cast: its target; Shape, ArgMax: int64; comparisons: bool; Where: its second input; the
    /// rest: the first input's). ONNX Runtime loading the model checks the same types (a node mixing float16 and float32
    /// inputs fails its type constraint), so this is not taken on trust.
    /// </summary>
    private static Dictionary<string, DataType> ValueTypes(GraphProto graph)
    {
        var types = new Dictionary<string, DataType>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) types[t.Name] = (DataType)t.DataType;
        foreach (var i in graph.Input) types[i.Name] = (DataType)i.Type.TensorType.ElemType;
        foreach (var n in graph.Node)
        {
            DataType In(int k) => k < n.Input.Count && types.TryGetValue(n.Input[k], out var t) ? t : DataType.Undefined;
            var type = n.OpType switch
            {
                "Cast" => (DataType)n.Attribute.Single(a => a.Name == "to").I,
                "Shape" or "ArgMax" => DataType.Int64,
                "Equal" or "Greater" or "LessOrEqual" or "And" => DataType.Bool,
                "Where" => In(1),
                _ => In(0),
            };
            foreach (string o in n.Output.Where(o => o.Length > 0)) types[o] = type;
        }
        return types;
    }

    private static IEnumerable<DataType> FloatInputs(NodeProto n, Dictionary<string, DataType> types) =>
        n.Input.Where(i => i.Length > 0 && types.ContainsKey(i)).Select(i => types[i]).Where(t => t is DataType.Float or DataType.Float16);

    [Theory]
    [InlineData("tests/data/fixtures/tiny-sd2-style", ExportOptimization.Plain)]
    [InlineData("tests/data/fixtures/tiny-sd2-style", ExportOptimization.Cpu)]
    [InlineData("tests/data/fixtures/tiny-sd2-style", ExportOptimization.Cuda)]
    [InlineData("tests/data/fixtures/tiny-sd2-style", ExportOptimization.DirectML)]
    [InlineData("tests/data/sd3-base", ExportOptimization.Plain)]
    [InlineData("tests/data/sd3-base", ExportOptimization.Cpu)]
    public void Fp16_graphs_keep_norms_attention_scores_softmax_and_the_timestep_embedding_in_float32(string folder, ExportOptimization profile)
    {
        string root = TestModels.NewRoot();
        try
        {
            string output = Export(folder, root, ExportPrecision.Fp16, profile);
            var manifest = OnnxModelManifest.TryRead(output)!;
            Assert.Equal(("fp16", true), (manifest.Precision, manifest.Fp16));
            foreach (string part in Directory.GetDirectories(output).Where(d => File.Exists(Path.Combine(d, "model.onnx"))).Select(d => Path.GetFileName(d)!))
            {
                var graph = Load(output, part).Graph;
                var types = ValueTypes(graph);
                string where = $"{folder} {ExportOptimizationNames.Name(profile)} {part}";
                Assert.Equal("fp16", manifest.Components![part]!["precision"]!.GetValue<string>());

                // float32 in and out, float16 weights used as they are (no Cast of a weight back to float32 but into a float32 island)
                Assert.All(graph.Input.Concat(graph.Output), v => Assert.NotEqual((int)DataType.Float16, v.Type.TensorType.ElemType));
                Assert.All(graph.Output, v => Assert.Equal((int)DataType.Float, v.Type.TensorType.ElemType));
                Assert.Contains(graph.Initializer, t => t.DataType == (int)DataType.Float16);

                // the islands: every normalisation, softmax, Sin and Cos reads float32 only
                var islands = graph.Node.Where(n => Float16Compute.Fp32Ops.Contains(n.OpType)).ToList();
                Assert.All(islands, n => Assert.All(FloatInputs(n, types), t => Assert.True(t == DataType.Float, $"{where}: {n.Name} ({n.OpType}) reads {t}")));
                if (part is "unet" or "transformer")
                    Assert.Equal(2, islands.Count(n => n.OpType is "Sin" or "Cos"));

                // the attention scores before each softmax (q.k MatMul and its scale) are float32 too
                var producer = graph.Node.SelectMany(n => n.Output.Where(o => o.Length > 0).Select(o => (o, n))).ToDictionary(x => x.o, x => x.n);
                foreach (var softmax in graph.Node.Where(n => n.OpType == "Softmax"))
                {
                    var scores = producer[softmax.Input[0]];
                    while (scores.OpType != "MatMul") scores = producer[scores.Input[0]];
                    Assert.All(FloatInputs(scores, types), t => Assert.True(t == DataType.Float, $"{where}: q.k {scores.Name} reads {t}"));
                }

                // everything with weights runs in float16: convolutions, linears, the fused contrib operators, except the
                // GroupNorms' gamma and beta (inputs 1 and 2), float32 as ORT's CUDA kernel requires
                var heavy = graph.Node.Where(n => n.OpType is "Conv" or "Gemm" || n.Domain == OnnxGraph.ContribDomain).ToList();
                Assert.NotEmpty(heavy);
                static bool gammaBeta(NodeProto n, int i) => n.OpType is "GroupNorm" or "SkipGroupNorm" && i is 1 or 2;
                Assert.All(heavy, n => Assert.True(
                    n.Input.Select((v, i) => (v, i)).Where(x => x.v.Length > 0 && types.TryGetValue(x.v, out var t) && t is DataType.Float or DataType.Float16)
                        .All(x => types[x.v] == (gammaBeta(n, x.i) ? DataType.Float : DataType.Float16)),
                    $"{where}: {n.Name} ({n.OpType}) does not run in float16 (with float32 gamma and beta for a GroupNorm)"));
            }
            if (profile is ExportOptimization.Cuda or ExportOptimization.DirectML)
            {
                var unet = Load(output, "unet");
                Assert.Empty(ContribSchemas.Problems(unet.Graph.Node, profile));
                Assert.Contains(unet.Graph.Node, n => n.OpType == "GroupNorm");
                Assert.Equal(profile == ExportOptimization.Cuda, unet.Graph.Node.Any(n => n.OpType == "SkipGroupNorm"));
                // The CPU provider resolves the graph (schemas and type constraints of every node, float16 ones included) and
                // then fails only at kernel assignment for GroupNorm, which it lacks (for float16 inputs ONNX Runtime says so
                // while placing Casts: "Failed to find kernel for com.microsoft.GroupNorm(1)").
                var e = Assert.ThrowsAny<OnnxRuntimeException>(() => Session(Path.Combine(output, "unet", "model.onnx")).Dispose());
                Assert.True(e.Message.Contains("Failed to find kernel for com.microsoft.GroupNorm(1)", StringComparison.Ordinal), e.Message);
            }
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Precision_is_recorded_and_fp16_weights_is_the_old_fp16_storage()
    {
        string root = TestModels.NewRoot();
        try
        {
            string weights = Path.Combine(root, "weights");
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = weights, Components = ExportComponents.Unet, Fp16 = true });
            var m = OnnxModelManifest.TryRead(weights)!;
            Assert.Equal(("fp16-weights", true), (m.Precision, m.Fp16));
            var unet = Load(weights, "unet").Graph;
            var types = ValueTypes(unet);
            // storage only: every weight is cast to float32 and everything computes in float32
            Assert.All(unet.Node.Where(n => n.OpType != "Cast"), n => Assert.DoesNotContain(DataType.Float16, FloatInputs(n, types)));

            string fp32 = Path.Combine(root, "fp32");
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = fp32, Components = ExportComponents.Unet });
            Assert.Equal(("fp32", false), (OnnxModelManifest.TryRead(fp32)!.Precision, OnnxModelManifest.TryRead(fp32)!.Fp16));

            // a manifest from before the field reads as its fp16 flag says; a contradicting one is refused naming the field
            Assert.Equal("fp16-weights", (m with { Precision = null }).PrecisionOrDerived);
            Assert.Equal("fp32", new OnnxModelManifest().PrecisionOrDerived);
            var bad = Assert.Throws<InvalidDataException>(() => (m with { Precision = "fp16", Fp16 = false }).ToJson());
            Assert.Contains("precision 'fp16'", bad.Message);
            Assert.Contains("precision must be one of", Assert.Throws<InvalidDataException>(() => (m with { Precision = "int8" }).ToJson()).Message);

            Assert.Equal(ExportPrecision.Fp16, ExportPrecisionNames.Parse("FP16"));
            Assert.Contains("--precision 'bf16'", Assert.Throws<ArgumentException>(() => ExportPrecisionNames.Parse("bf16")).Message);
            string refused = Path.Combine(root, "refused");
            var v = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = refused, Precision = (ExportPrecision)9,
            }));
            Assert.Contains("precision value 9", v.Message);
            Assert.False(Directory.Exists(refused));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Float16_compute_pass_refuses_a_graph_without_float16_weights()
    {
        var g = new OnnxGraph("g", fp16Weights: false);
        Assert.Contains("float16 weights", Assert.Throws<InvalidOperationException>(() => Float16Compute.Apply(g)).Message);
    }
}

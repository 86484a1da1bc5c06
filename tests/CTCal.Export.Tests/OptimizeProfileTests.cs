using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;
using CTCal.Export.Onnx.Proto;
using CTCal.Tests;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Export.Tests;

/// <summary>
/// Export profiles (<see cref="ExportOptions.Optimize"/>): the cpu profile runs in ONNX Runtime's CPU provider and matches
/// the plain graph within 1e-4; the cuda and directml profiles are checked for structure against the contrib-operator
/// schemas (<see cref="ContribSchemas"/>) since no GPU runs here.
/// </summary>
public sealed class OptimizeProfileTests
{
    private const ExportComponents Parts = ExportComponents.Unet | ExportComponents.VaeDecoder | ExportComponents.VaeEncoder;
    private static readonly string[] PartFolders = ["unet", "vae_decoder", "vae_encoder"];

    internal static string Export(string fixture, string root, ExportOptimization profile, ExportComponents parts = Parts)
    {
        string output = Path.Combine(root, ExportOptimizationNames.Name(profile));
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = Path.Combine(TestPaths.Fixtures, fixture), OutputFolder = output, Components = parts, Optimize = profile,
        });
        return output;
    }

    // Runs both graphs on the same seeded inputs: the profile's output is within 1e-4 (relative to max(1, max |plain|)) of the plain one's.
    internal static void AssertMatchesPlain(string plainModel, string profileModel, int seed, string what)
    {
        using var a = new OrtRunner(plainModel);
        using var b = new OrtRunner(profileModel);
        var inputs = Inputs(a.Session, seed);
        var expected = a.Run(inputs).Single().Value.Data;
        var actual = b.Run(inputs).Single().Value.Data;
        float scale = Math.Max(1f, OrtRunner.MaxAbs(expected));
        float diff = OrtRunner.MaxAbsDiff(actual, expected);
        Assert.True(OrtRunner.MaxAbs(expected) > 0f, $"{what}: plain output is all zeros");
        Assert.True(diff <= 1e-4f * scale, $"{what}: profile differs from plain by {diff} (max |plain| {OrtRunner.MaxAbs(expected)})");
    }

    private static ModelProto Load(string folder, string part) =>
        ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(folder, part, "model.onnx")));

    // Seeded inputs from the session's metadata: batch 2, sequence 77, every other symbolic dim 16; timesteps in [0, 1000).
    internal static (string Name, Array Data, long[] Shape)[] Inputs(InferenceSession session, int seed)
    {
        var rng = new Random(seed);
        return session.InputMetadata.Select(kv =>
        {
            var meta = kv.Value;
            long[] shape = meta.Dimensions.Select((d, i) => d >= 0 ? d : meta.SymbolicDimensions[i] switch
            {
                "batch" => 2L,
                "sequence" => 77L,
                _ => 16L,
            }).ToArray();
            int n = (int)shape.Aggregate(1L, (a, b) => a * b);
            float scale = kv.Key == UNetGraph.TimestepInput ? 1000f : 1f;
            float[] data = Enumerable.Range(0, n).Select(_ => kv.Key == UNetGraph.TimestepInput ? rng.NextSingle() * scale : rng.NextSingle() * 2 - 1).ToArray();
            return (kv.Key, (Array)data, shape);
        }).ToArray();
    }

    [Theory]
    [InlineData("tiny-sd1")]
    [InlineData("tiny-sd2-style")]
    public void Cpu_profile_matches_the_plain_graph_within_1e_4_in_the_cpu_provider(string fixture)
    {
        string root = TestModels.NewRoot();
        try
        {
            string plain = Export(fixture, root, ExportOptimization.Plain);
            string cpu = Export(fixture, root, ExportOptimization.Cpu);
            foreach (string part in PartFolders)
                AssertMatchesPlain(Path.Combine(plain, part, "model.onnx"), Path.Combine(cpu, part, "model.onnx"), seed: part.Length, $"{fixture} {part} (cpu profile)");

            var unet = Load(cpu, "unet");
            var ops = unet.Graph.Node.Where(n => n.Domain == OnnxGraph.ContribDomain).Select(n => n.OpType).ToHashSet();
            Assert.Equal(["Gelu", "MultiHeadAttention"], ops.Order());
            Assert.DoesNotContain(unet.Graph.Node, n => n.OpType is "Softmax" or "Erf" or "Split");
            Assert.Contains(unet.OpsetImport, o => o.Domain == OnnxGraph.ContribDomain && o.Version == OnnxGraph.ContribOpset);
            Assert.Empty(ContribSchemas.Problems(unet.Graph.Node, ExportOptimization.Cpu));
            Assert.Contains(Load(cpu, "vae_decoder").Graph.Node, n => n.OpType == "MultiHeadAttention");
            Assert.DoesNotContain(Load(plain, "unet").OpsetImport, o => o.Domain == OnnxGraph.ContribDomain);
            Assert.DoesNotContain(Load(plain, "unet").Graph.Node, n => n.Domain.Length > 0);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    /// <summary>
    /// The SD3 transformer (the tiny-sd3 fixture, diffusers 0.29.2) takes the profile's MultiHeadAttention for its joint
    /// attention and FastGelu for its tanh GELU (cpu, cuda; directml keeps the Tanh chain). The CPU provider runs both
    /// operators, so every profile's transformer, the GPU ones included, is run here against the plain graph.
    /// </summary>
    [Theory]
    [InlineData(ExportOptimization.Cpu)]
    [InlineData(ExportOptimization.Cuda)]
    [InlineData(ExportOptimization.DirectML)]
    public void Sd3_transformer_profiles_match_the_plain_graph_within_1e_4_and_the_contrib_schemas(ExportOptimization profile)
    {
        string root = TestModels.NewRoot();
        try
        {
            string sd3 = Path.Combine("sd3", "tiny-sd3");
            string plain = Export(sd3, root, ExportOptimization.Plain, ExportComponents.Transformer);
            string fused = Export(sd3, root, profile, ExportComponents.Transformer);
            var graph = Load(fused, "transformer").Graph;
            var ops = graph.Node.Where(n => n.Domain == OnnxGraph.ContribDomain).Select(n => n.OpType).ToHashSet();
            Assert.Equal(profile == ExportOptimization.DirectML ? ["MultiHeadAttention"] : ["FastGelu", "MultiHeadAttention"], ops.Order());
            Assert.DoesNotContain(graph.Node, n => n.OpType == "Softmax");
            Assert.Equal(profile == ExportOptimization.DirectML, graph.Node.Any(n => n.OpType == "Tanh"));
            Assert.Empty(ContribSchemas.Problems(graph.Node, profile));

            AssertMatchesPlain(Path.Combine(plain, "transformer", "model.onnx"), Path.Combine(fused, "transformer", "model.onnx"), seed: 3,
                $"tiny-sd3 transformer ({ExportOptimizationNames.Name(profile)} profile)");
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Theory]
    [InlineData(ExportOptimization.Cuda)]
    [InlineData(ExportOptimization.DirectML)]
    public void Gpu_profiles_match_the_contrib_schemas_and_pass_onnx_runtime_schema_checks(ExportOptimization profile)
    {
        string root = TestModels.NewRoot();
        try
        {
            string output = Export("tiny-sd1", root, profile);
            foreach (string part in PartFolders)
            {
                var model = Load(output, part);
                Assert.Empty(ContribSchemas.Problems(model.Graph.Node, profile));
                Assert.Contains(model.OpsetImport, o => o.Domain == OnnxGraph.ContribDomain && o.Version == OnnxGraph.ContribOpset);
                var groupNorms = model.Graph.Node.Where(n => n.OpType == "GroupNorm").ToList();
                Assert.NotEmpty(groupNorms);
                Assert.All(groupNorms, n => Assert.Equal(1L, n.Attribute.Single(a => a.Name == "channels_last").I));
                Assert.DoesNotContain(model.Graph.Node, n => n.OpType == "InstanceNormalization");

                // The CPU provider has no GroupNorm kernel. Session creation resolves the graph first (every node checked against
                // its registered schema: input/output counts, required attributes, attribute types, type inference), so failing
                // only at kernel assignment for GroupNorm means the contrib nodes passed ONNX Runtime's own schema checks.
                var e = Assert.ThrowsAny<OnnxRuntimeException>(() => new OrtRunner(Path.Combine(output, part, "model.onnx")).Dispose());
                Assert.Contains("Could not find an implementation for GroupNorm(1)", e.Message);
            }
            var unet = Load(output, "unet");
            // the tiny UNet's GEGLU width (2 x 4 x 32 = 256) is not one ORT's CUDA BiasSplitGelu runs; DirectML takes any width
            Assert.Equal(profile == ExportOptimization.DirectML, unet.Graph.Node.Any(n => n.OpType == "BiasSplitGelu"));
            Assert.Equal(profile == ExportOptimization.Cuda, unet.Graph.Node.Any(n => n.OpType == "Gelu"));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Theory]
    [InlineData(ExportOptimization.Cpu)]
    [InlineData(ExportOptimization.Cuda)]
    [InlineData(ExportOptimization.DirectML)]
    public void Sd15_unet_graph_fuses_every_attention_norm_and_geglu_of_the_profile(ExportOptimization profile)
    {
        var config = UNetConfig.Parse(ReferenceModels.Sd15.UnetConfigJson, "sd15 unet config");
        var g = UNetGraph.Build(config, fp16Weights: false, FusedOps.For(profile));
        int count(string op) => g.Nodes.Count(n => n.OpType == op);
        const int blocks = 16; // SD 1.5: 2 + 2 + 2 down, 1 mid, 3 + 3 + 3 up transformer blocks
        Assert.Empty(ContribSchemas.Problems(g.Nodes, profile));
        Assert.Equal(2 * blocks, count("MultiHeadAttention"));
        bool gpu = profile != ExportOptimization.Cpu;
        // the cpu profile keeps Add + LayerNormalization (ORT's CPU SkipLayerNormalization kernel is the slower of the two)
        Assert.Equal(gpu ? 2 * blocks : 0, count("SkipLayerNormalization"));
        Assert.Equal(gpu ? blocks : 3 * blocks, count("LayerNormalization")); // norm1: its input is no residual sum inside the block
        Assert.Equal(0, count("Softmax"));
        Assert.Equal(0, count("Erf"));
        Assert.Equal(0, count("Split")); // GEGLU: BiasSplitGelu (gpu) or two half Gemms (cpu)
        Assert.Equal(gpu ? blocks : 0, count("BiasSplitGelu"));
        Assert.Equal(gpu ? 0 : blocks, count("Gelu"));
        // 22 resnets x 2 norms, 16 transformer norms, conv_norm_out; with cuda each resnet's norm2 is a SkipGroupNorm that
        // adds the [B, C] time projection (so no broadcast Add of it is left), with SiLU
        bool skipNorm = profile == ExportOptimization.Cuda;
        int norm2 = skipNorm ? 22 : 0;
        Assert.Equal(gpu ? 22 * 2 + 16 + 1 - norm2 : 0, count("GroupNorm"));
        Assert.Equal(norm2, count("SkipGroupNorm"));
        Assert.Equal(gpu ? 0 : 22 * 2 + 16 + 1, count("InstanceNormalization"));
        Assert.Equal(gpu ? 22 * 2 + 1 : 0, g.Nodes.Count(n => n.OpType is "GroupNorm" or "SkipGroupNorm" && n.Attribute.Single(a => a.Name == "activation").I == 1));
        // the time projections (the Gemms of time_emb_proj, [B, C]): read by SkipGroupNorm as its skip, or unsqueezed for an Add
        var projections = g.Nodes.Where(n => n.OpType == "Gemm" && n.Input[1].EndsWith(".time_emb_proj.weight", StringComparison.Ordinal)).ToList();
        Assert.Equal(22, projections.Count);
        foreach (var proj in projections)
        {
            var readers = g.Nodes.Where(n => n.Input.Contains(proj.Output[0])).ToList();
            var reader = Assert.Single(readers);
            if (skipNorm)
            {
                Assert.Equal(("SkipGroupNorm", 3), (reader.OpType, reader.Input.IndexOf(proj.Output[0]))); // X, gamma, beta, skip
                Assert.Equal(4, reader.Input.Count); // no bias
                Assert.EndsWith(".norm2.weight", reader.Input[1]);
            }
            else
            {
                Assert.Equal("Unsqueeze", reader.OpType);
            }
        }
    }

    [Fact]
    public void Cuda_profile_keeps_the_plain_group_norm_where_the_cuda_kernel_refuses_the_channels_per_group()
    {
        // tiny-sd1's UNet at 32 groups: 32 channels (1 per group, odd), 64 (2), the up blocks' concatenations 96 (3) and 128 (4)
        string json = File.ReadAllText(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "unet", "config.json"))
            .Replace("\"norm_num_groups\": 8", "\"norm_num_groups\": 32", StringComparison.Ordinal);
        Assert.Contains("\"norm_num_groups\": 32", json);
        var config = UNetConfig.Parse(json, "tiny-sd1 unet at 32 groups");
        int norms = UNetGraph.Build(config, fp16Weights: false, FusedOps.None).Nodes.Count(n => n.OpType == "InstanceNormalization");
        foreach (var profile in new[] { ExportOptimization.Cuda, ExportOptimization.DirectML })
        {
            var g = UNetGraph.Build(config, fp16Weights: false, FusedOps.For(profile));
            var gammaSize = g.Weights.ToDictionary(w => w.Name, w => w.Shape[0]);
            var fused = g.Nodes.Where(n => n.OpType is "GroupNorm" or "SkipGroupNorm").ToList();
            Assert.NotEmpty(fused);
            Assert.Empty(ContribSchemas.Problems(g.Nodes, profile));
            int plain = g.Nodes.Count(n => n.OpType == "InstanceNormalization");
            if (profile == ExportOptimization.DirectML)
            {
                Assert.Equal(0, plain); // DirectML's kernel takes any count
                continue;
            }
            // every fused norm has an even count of at most 512 per group; the others (32 and 96 channels) are plain
            Assert.All(fused, n =>
            {
                long perGroup = gammaSize[n.Input[1]] / n.Attribute.Single(a => a.Name == "groups").I;
                Assert.True(perGroup % 2 == 0 && perGroup <= 512, $"{n.Name}: {perGroup} channels per group");
            });
            Assert.True(plain > 0, "no norm fell back to InstanceNormalization");
            Assert.Equal(norms, fused.Count + plain); // each norm once, fused or not
        }
        Assert.False(FusedOps.For(ExportOptimization.Cuda).GroupNormFor(32, 32));
        Assert.True(FusedOps.For(ExportOptimization.Cuda).GroupNormFor(320, 32));
        Assert.False(FusedOps.For(ExportOptimization.Cuda).GroupNormFor(1024, 1)); // 1024 per group > 512
        Assert.True(FusedOps.For(ExportOptimization.DirectML).GroupNormFor(32, 32));
        Assert.False(FusedOps.For(ExportOptimization.Cpu).GroupNormFor(320, 32));
    }

    [Fact]
    public void Bad_optimize_values_are_refused_naming_the_value_before_anything_is_written()
    {
        var e = Assert.Throws<ArgumentException>(() => ExportOptimizationNames.Parse("tensorrt"));
        Assert.Contains("--optimize 'tensorrt'", e.Message);
        Assert.Equal(ExportOptimization.DirectML, ExportOptimizationNames.Parse("DirectML"));

        string root = TestModels.NewRoot();
        try
        {
            string output = Path.Combine(root, "out");
            var v = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Optimize = (ExportOptimization)7,
            }));
            Assert.Contains("optimize value 7", v.Message);
            Assert.False(Directory.Exists(output));
            Assert.Empty(Directory.EnumerateFileSystemEntries(root));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Manifest_records_the_profile()
    {
        string root = TestModels.NewRoot();
        try
        {
            string output = Path.Combine(root, "out");
            OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet, Optimize = ExportOptimization.Cpu,
            });
            Assert.Equal("cpu", OnnxModelManifest.TryRead(output)!.Optimize);
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet });
            Assert.Equal("plain", OnnxModelManifest.TryRead(output)!.Optimize);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

using System.Text.Json.Nodes;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;
using CTCal.Export.Onnx.Proto;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>
/// Step-cache graphs (<see cref="ExportOptions.StepCacheBranch"/>, DeepCache): given the deep feature the full UNet returns
/// for a step, the shallow graph reproduces that step's output, for every branch of the tiny fixtures and in the plain and
/// cpu profiles; the full graph's prediction is the plain export's; bad branches are refused before anything is written.
/// </summary>
public sealed class StepCacheExportTests
{
    private static string Export(string fixture, string output, int? branch, ExportOptimization profile = ExportOptimization.Plain,
        ExportComponents parts = ExportComponents.Unet)
    {
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = Path.Combine(TestPaths.Fixtures, fixture), OutputFolder = output, Components = parts, Optimize = profile, StepCacheBranch = branch,
        });
        return output;
    }

    // batch 2 (both guidance halves), 16x16 latent, 77 tokens, two different timesteps; seeded
    private static (string Name, Array Data, long[] Shape)[] Inputs(UNetConfig c, int seed)
    {
        var rng = new Random(seed);
        float[] Draw(int n, float scale) => Enumerable.Range(0, n).Select(_ => (rng.NextSingle() * 2 - 1) * scale).ToArray();
        return
        [
            (UNetGraph.SampleInput, Draw(2 * c.InChannels * 16 * 16, 2f), [2, c.InChannels, 16, 16]),
            (UNetGraph.TimestepInput, new[] { 981f, 21.5f }, [2]),
            (UNetGraph.EncoderHiddenStatesInput, Draw(2 * 77 * c.CrossAttentionDim, 1f), [2, 77, c.CrossAttentionDim]),
        ];
    }

    [Theory]
    [InlineData("tiny-sd1", ExportOptimization.Plain)]
    [InlineData("tiny-sd1", ExportOptimization.Cpu)]
    [InlineData("tiny-sd2-style", ExportOptimization.Plain)]
    public void The_shallow_graph_given_the_same_steps_feature_reproduces_the_full_unet_within_1e_5_for_every_branch(string fixture, ExportOptimization profile)
    {
        string root = TestModels.NewRoot();
        try
        {
            var config = UNetConfig.Load(Path.Combine(TestPaths.Fixtures, fixture, "unet", "config.json"));
            var inputs = Inputs(config, seed: 7);
            string plain = Export(fixture, Path.Combine(root, "plain"), null, profile);
            using var reference = new OrtRunner(Path.Combine(plain, "unet", "model.onnx"));
            var expected = reference.Run(inputs)[UNetGraph.Output];
            for (int branch = 1; branch <= UNetGraph.UpLayerCount(config); branch++)
            {
                string folder = Export(fixture, Path.Combine(root, $"b{branch}"), branch, profile);
                using var full = new OrtRunner(Path.Combine(folder, "unet", "model.onnx"));
                Assert.Equal([UNetGraph.Output, UNetGraph.DeepFeature], full.Session.OutputNames); // out_sample stays output 0
                var outputs = full.Run(inputs);
                var feature = outputs[UNetGraph.DeepFeature];
                var (channels, downscale) = UNetGraph.FeatureShape(config, branch);
                Assert.Equal([2L, channels, 16 / downscale, 16 / downscale], feature.Shape);

                // the extra output changes nothing in the prediction
                Assert.True(OrtRunner.MaxAbsDiff(outputs[UNetGraph.Output].Data, expected.Data) <= 1e-6f,
                    $"{fixture} branch {branch}: the full step-cache UNet differs from the plain export");

                using var shallow = new OrtRunner(Path.Combine(folder, ManifestStepCache.ShallowFolder, "model.onnx"));
                var got = shallow.Run([.. inputs, (UNetGraph.DeepFeature, feature.Data, feature.Shape)])[UNetGraph.Output];
                float scale = Math.Max(1f, OrtRunner.MaxAbs(expected.Data));
                float diff = OrtRunner.MaxAbsDiff(got.Data, outputs[UNetGraph.Output].Data);
                Assert.True(diff <= 1e-5f * scale, $"{fixture} {profile} branch {branch}: shallow differs from full by {diff} (max |out| {OrtRunner.MaxAbs(expected.Data)})");

                // and the feature is really read: a zero feature changes the prediction by far more than the parity difference
                var zero = shallow.Run([.. inputs, (UNetGraph.DeepFeature, new float[feature.Data.Length], feature.Shape)])[UNetGraph.Output];
                Assert.True(OrtRunner.MaxAbsDiff(zero.Data, got.Data) > 10 * diff + 1e-6f, $"{fixture} branch {branch}: the shallow graph ignores its feature (diff {OrtRunner.MaxAbsDiff(zero.Data, got.Data)}, max |out| {OrtRunner.MaxAbs(got.Data)})");
            }
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void The_manifest_records_the_branch_feature_and_flops_and_the_shallow_graph_reads_only_its_own_weights()
    {
        string root = TestModels.NewRoot();
        try
        {
            string folder = Export("tiny-sd1", Path.Combine(root, "m"), 2, parts: ExportComponents.All);
            var manifest = OnnxModelManifest.TryRead(folder)!;
            var config = UNetConfig.Load(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "unet", "config.json"));
            var cache = manifest.StepCache!;
            Assert.Equal((2, 64, 1), (cache.Branch, cache.FeatureChannels, cache.FeatureDownscale)); // after up_blocks.0's upsampler
            Assert.True(cache.ShallowStepGflops < cache.FullStepGflops);
            Assert.Equal(Math.Round(UNetGraph.Flops(config, config.SampleSize, config.SampleSize, 77) / 1e9, 6), cache.FullStepGflops);
            Assert.NotNull(manifest.Components![ManifestStepCache.ShallowFolder]);

            // Optimum's pipelines know no unet_shallow part: model_index.json does not list it
            var index = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "model_index.json")))!.AsObject();
            Assert.True(index.ContainsKey("unet"));
            Assert.False(index.ContainsKey(ManifestStepCache.ShallowFolder));

            var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(folder, ManifestStepCache.ShallowGraph)));
            var initializers = model.Graph.Initializer.Select(t => t.Name).ToHashSet();
            Assert.Contains("conv_in.weight", initializers);
            Assert.Contains("up_blocks.1.resnets.1.conv1.weight", initializers);
            Assert.Contains("down_blocks.0.resnets.0.conv1.weight", initializers); // feeds the skip of up_blocks.1.resnets.0
            Assert.DoesNotContain("mid_block.resnets.0.conv1.weight", initializers);
            Assert.DoesNotContain("up_blocks.0.resnets.0.conv1.weight", initializers);
            Assert.DoesNotContain("down_blocks.1.resnets.0.conv1.weight", initializers);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    /// <summary>FLOPs per call from the builder's walk: the shallow graph costs less the shallower it is, never more than the full UNet.</summary>
    [Fact]
    public void Shallow_flops_grow_with_the_branch_and_stay_below_the_full_unet()
    {
        var config = UNetConfig.Load(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "unet", "config.json"));
        double full = UNetGraph.Flops(config, 16, 16, 77);
        double previous = 0;
        for (int branch = 1; branch <= UNetGraph.UpLayerCount(config); branch++)
        {
            double shallow = UNetGraph.Flops(config, 16, 16, 77, branch, shallow: true);
            Assert.True(shallow > previous && shallow < full, $"branch {branch}: {shallow} FLOPs (previous {previous}, full {full})");
            previous = shallow;
            Assert.Equal(full, UNetGraph.Flops(config, 16, 16, 77, branch)); // the feature output adds no compute
        }

        // branch 1 of tiny-sd1 by hand (multiply-adds; N = 256 cells, S = 77 tokens, C = 32, temb 128, text 32 wide):
        const double n = 256, s = 77, c = 32;
        double timeEmbedding = c * 128 + 128 * 128;
        double convIn = n * 4 * c * 9, convOut = n * c * 4 * 9;
        double resnet = n * 2 * c * c * 9 + 128 * c + n * c * c * 9 + n * 2 * c * c; // up_blocks.1.resnets.1: 64 -> 32, 1x1 shortcut
        double transformer = 2 * n * c * c + (4 * n * c * c + 2 * n * n * c) + (2 * n * c * c + 2 * s * c * c + 2 * n * s * c) + 12 * n * c * c;
        Assert.Equal(2 * (timeEmbedding + convIn + resnet + transformer + convOut), UNetGraph.Flops(config, 16, 16, 77, 1, shallow: true));
    }

    [Theory]
    [InlineData(ExportOptimization.Cuda)]
    [InlineData(ExportOptimization.DirectML)]
    public void The_gpu_profiles_write_the_shallow_graph_with_the_same_fused_operators(ExportOptimization profile)
    {
        var config = UNetConfig.Load(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "unet", "config.json"));
        var full = UNetGraph.Build(config, false, FusedOps.For(profile), stepCacheBranch: 4);
        var shallow = UNetGraph.BuildShallow(config, 4, false, FusedOps.For(profile));
        var fullOps = full.Nodes.Where(n => n.Domain == OnnxGraph.ContribDomain).Select(n => n.OpType).ToHashSet();
        var shallowOps = shallow.Nodes.Where(n => n.Domain == OnnxGraph.ContribDomain).Select(n => n.OpType).ToHashSet();
        Assert.Contains("GroupNorm", shallowOps);
        Assert.Subset(fullOps, shallowOps);
    }

    [Theory]
    [InlineData(0, "step-cache branch 0: must be 1 to 4")]
    [InlineData(5, "step-cache branch 5: must be 1 to 4")]
    public void A_branch_outside_the_unets_up_layers_is_refused_before_anything_is_written(int branch, string message)
    {
        string root = TestModels.NewRoot();
        try
        {
            string output = Path.Combine(root, "out");
            var e = Assert.Throws<ExportValidationException>(() => Export("tiny-sd1", output, branch));
            Assert.Contains(e.Problems, p => p.StartsWith(message, StringComparison.Ordinal) && p.Contains("unet/config.json", StringComparison.Ordinal));
            Assert.False(Directory.Exists(output));
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void Step_caching_is_refused_for_sd3_and_for_an_export_without_the_unet()
    {
        string root = TestModels.NewRoot();
        try
        {
            var sd3 = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = Path.Combine(TestPaths.Fixtures, "sd3", "tiny-sd3"), OutputFolder = Path.Combine(root, "sd3"), StepCacheBranch = 1,
            }));
            Assert.Contains(sd3.Problems, p => p.Contains("step caching is for UNet models", StringComparison.Ordinal));
            var noUnet = Assert.Throws<ExportValidationException>(() => Export("tiny-sd1", Path.Combine(root, "vae"), 1, parts: ExportComponents.VaeDecoder));
            Assert.Contains(noUnet.Problems, p => p.Contains("unet is not among the exported components", StringComparison.Ordinal));
            Assert.Empty(Directory.EnumerateFileSystemEntries(root));
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }
}

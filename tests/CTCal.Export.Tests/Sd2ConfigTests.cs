using CTCal.Core.Diffusers;
using CTCal.Export.Graphs;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>An SD2-style UNet (linear projections, per-block heads, upcast_attention, 3 levels, 2 layers) exports and runs.</summary>
public sealed class Sd2ConfigTests
{
    /// <summary>The tiny SD2-style UNet config shared with the integration tests.</summary>
    private static readonly string Config = TinyConfigs.Sd2.UNet;

    [Fact]
    public void Sd2_style_unet_exports_and_runs_with_the_right_output_shape()
    {
        string root = TestModels.NewRoot();
        try
        {
            string model = Path.Combine(root, "sd2");
            Directory.CreateDirectory(Path.Combine(model, "unet"));
            File.WriteAllText(Path.Combine(model, "unet", "config.json"), Config);
            var config = UNetConfig.Load(Path.Combine(model, "unet", "config.json"));
            var graph = UNetGraph.Build(config, fp16Weights: false);
            Assert.Contains(graph.Weights, w => w.Name == "up_blocks.2.attentions.2.proj_in.weight" && w.Shape.SequenceEqual(new long[] { 16, 16 }));
            Assert.Contains(graph.Weights, w => w.Name == "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight" && w.Shape.SequenceEqual(new long[] { 32, 24 }));
            TestModels.WriteRandomWeights(Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"), graph.Weights, seed: 7);

            string output = Path.Combine(root, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, Components = ExportComponents.Unet });
            using var ort = new OrtRunner(Path.Combine(output, "unet", "model.onnx"));
            var rng = new Random(3);
            float[] sample = Enumerable.Range(0, 2 * 4 * 16 * 24).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
            float[] context = Enumerable.Range(0, 2 * 10 * 24).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
            var result = ort.Run(("sample", sample, [2, 4, 16, 24]), ("timestep", new[] { 10f, 700f }, [2]), ("encoder_hidden_states", context, [2, 10, 24]))["out_sample"];
            Assert.Equal([2, 4, 16, 24], result.Shape);
            Assert.All(result.Data, v => Assert.True(float.IsFinite(v)));
            // the two batch items differ (different timesteps reach the output)
            Assert.True(OrtRunner.MaxAbsDiff(result.Data.AsSpan(0, result.Data.Length / 2), result.Data.AsSpan(result.Data.Length / 2)) > 1e-4f);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

using CTCal.Core.Diffusers;
using CTCal.Export.Fixtures;
using CTCal.Export.Graphs;

namespace CTCal.Export.Tests;

/// <summary>A [Fact] that runs only when the environment variable CTCAL_EXPORT_LARGE_TESTS=1 (needs ~10 GB disk, ~8 GB RAM).</summary>
public sealed class LargeFactAttribute : FactAttribute
{
    public LargeFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("CTCAL_EXPORT_LARGE_TESTS") != "1")
            Skip = "large export test: set CTCAL_EXPORT_LARGE_TESTS=1 to run";
    }
}

/// <summary>An SD 1.5-size UNet (3.4 GB fp32: external data; 1.7 GB fp16: embedded) exports and loads and runs in ONNX Runtime.</summary>
public sealed class LargeModelTests
{
    private const string Sd15Unet = """
    {
      "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32
    }
    """;

    [LargeFact]
    public void Sd15_size_unet_exports_with_external_data_and_fp16_and_runs_in_ort()
    {
        string root = TestModels.NewRoot();
        try
        {
            string model = Path.Combine(root, "sd15");
            Directory.CreateDirectory(Path.Combine(model, "unet"));
            File.WriteAllText(Path.Combine(model, "unet", "config.json"), Sd15Unet);
            var graph = UNetGraph.Build(UNetConfig.Load(Path.Combine(model, "unet", "config.json")), false);
            Assert.Equal(686, graph.Weights.Count); // the SD 1.5 UNet state dict has 686 tensors
            RandomWeights.Write(Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"), graph.Weights, seed: 1);

            var rng = new Random(2);
            float[] sample = Enumerable.Range(0, 4 * 8 * 8).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
            float[] context = Enumerable.Range(0, 77 * 768).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
            float[] Run(string folder)
            {
                using var ort = new OrtRunner(Path.Combine(folder, "unet", "model.onnx"));
                var r = ort.Run(("sample", sample, [1, 4, 8, 8]), ("timestep", new[] { 500f }, [1]), ("encoder_hidden_states", context, [1, 77, 768]))["out_sample"];
                Assert.Equal([1, 4, 8, 8], r.Shape);
                return r.Data;
            }

            string fp32 = Path.Combine(root, "fp32");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = fp32, Components = ExportComponents.Unet });
            Assert.True(File.Exists(Path.Combine(fp32, "unet", "model.onnx.data")));
            float[] a = Run(fp32);
            Directory.Delete(fp32, true);

            string fp16 = Path.Combine(root, "fp16");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = fp16, Components = ExportComponents.Unet, Fp16 = true });
            Assert.False(File.Exists(Path.Combine(fp16, "unet", "model.onnx.data")));
            float[] b = Run(fp16);
            Assert.All(a, v => Assert.True(float.IsFinite(v)));
            float rel = OrtRunner.MaxAbsDiff(a, b) / OrtRunner.MaxAbs(a);
            Assert.True(rel <= 1e-2f, $"fp16 relative error {rel}");
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

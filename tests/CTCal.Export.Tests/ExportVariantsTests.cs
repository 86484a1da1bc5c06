using Microsoft.ML.OnnxRuntime.Tensors;

namespace CTCal.Export.Tests;

/// <summary>fp16 weights, dynamic shapes and external data on the tiny-sd1 export.</summary>
public sealed class ExportVariantsTests(TinySd1Export export) : IClassFixture<TinySd1Export>
{
    [Fact]
    public void Fp16_export_is_within_1e_2_relative_of_fp32_and_half_the_size()
    {
        string root = TestModels.NewRoot();
        try
        {
            string out16 = Path.Combine(root, "fp16");
            OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = out16, Fp16 = true,
                Components = ExportComponents.Unet | ExportComponents.VaeDecoder,
            });
            float[] fp32 = TestModels.RunUnet(export.Output);
            float[] fp16 = TestModels.RunUnet(out16);
            float rel = OrtRunner.MaxAbsDiff(fp16, fp32) / OrtRunner.MaxAbs(fp32);
            Assert.True(rel <= 1e-2f, $"unet fp16 relative error {rel}");
            Assert.True(rel > 0f, "fp16 weights should change the output slightly");

            var latents = TinySd1Export.Read("vae_io.safetensors", "latents");
            using var a = new OrtRunner(export.Model("vae_decoder"));
            using var b = new OrtRunner(Path.Combine(out16, "vae_decoder", "model.onnx"));
            float[] d32 = a.Run(("latent_sample", latents.Data, latents.Shape))["sample"].Data;
            float[] d16 = b.Run(("latent_sample", latents.Data, latents.Shape))["sample"].Data;
            float relVae = OrtRunner.MaxAbsDiff(d16, d32) / OrtRunner.MaxAbs(d32);
            Assert.True(relVae <= 1e-2f, $"vae_decoder fp16 relative error {relVae}");

            long size32 = new FileInfo(export.Model("unet")).Length;
            long size16 = new FileInfo(Path.Combine(out16, "unet", "model.onnx")).Length;
            Assert.InRange(size16, size32 * 45 / 100, size32 * 60 / 100);
            Assert.Equal(TensorElementType.Float, b.Session.InputMetadata["latent_sample"].ElementDataType);
            Assert.Equal(TensorElementType.Float, b.Session.OutputMetadata["sample"].ElementDataType);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Unet_runs_at_two_latent_sizes_and_two_batch_sizes()
    {
        using var ort = new OrtRunner(export.Model("unet"));
        var rng = new Random(5);
        foreach (var (h, w) in new[] { (16, 16), (24, 32) })
        {
            float[] one = Enumerable.Range(0, 4 * h * w).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
            float[] ctx = Enumerable.Range(0, 77 * 32).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
            var single = ort.Run(("sample", one, [1, 4, h, w]), ("timestep", new[] { 321f }, [1]), ("encoder_hidden_states", ctx, [1, 77, 32]))["out_sample"];
            Assert.Equal([1, 4, h, w], single.Shape);

            // batch 3 holding the same item three times: each output item equals the batch-1 output
            float[] three = [.. one, .. one, .. one];
            float[] ctx3 = [.. ctx, .. ctx, .. ctx];
            var batched = ort.Run(("sample", three, [3, 4, h, w]), ("timestep", new[] { 321f, 321f, 321f }, [3]), ("encoder_hidden_states", ctx3, [3, 77, 32]))["out_sample"];
            Assert.Equal([3, 4, h, w], batched.Shape);
            for (int b = 0; b < 3; b++)
                Assert.True(OrtRunner.MaxAbsDiff(batched.Data.AsSpan(b * one.Length, one.Length), single.Data) < 1e-5f);
        }
    }

    [Fact]
    public void External_data_export_gives_the_same_outputs_with_relative_data_path()
    {
        string root = TestModels.NewRoot();
        try
        {
            string outExt = Path.Combine(root, "ext");
            OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = outExt, Components = ExportComponents.Unet, ExternalDataThreshold = 0,
            });
            string data = Path.Combine(outExt, "unet", "model.onnx.data");
            Assert.True(File.Exists(data));
            Assert.True(new FileInfo(Path.Combine(outExt, "unet", "model.onnx")).Length < 200_000, "weights should live in model.onnx.data");
            Assert.Equal(TestModels.RunUnet(export.Output), TestModels.RunUnet(outExt));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Folder_has_the_optimum_layout_and_a_manifest()
    {
        string o = export.Output;
        foreach (string f in new[] { "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
                     "text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx", "vae_encoder/model.onnx",
                     "scheduler/scheduler_config.json", "model_index.json", "ctcal_manifest.json" })
            Assert.True(File.Exists(Path.Combine(o, f)), $"missing {f}");
        using var manifest = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(o, "ctcal_manifest.json")));
        var root = manifest.RootElement;
        Assert.Equal(2, root.GetProperty("formatVersion").GetInt32());
        Assert.Equal(17, root.GetProperty("opset").GetInt32());
        Assert.False(root.GetProperty("fp16").GetBoolean());
        var unet = root.GetProperty("components").GetProperty("unet");
        var file = unet.GetProperty("files")[0];
        using (var sha = System.Security.Cryptography.SHA256.Create())
        using (var stream = File.OpenRead(Path.Combine(o, "unet", "model.onnx")))
            Assert.Equal(Convert.ToHexString(sha.ComputeHash(stream)).ToLowerInvariant(), file.GetProperty("sha256").GetString());
        var timestep = unet.GetProperty("inputs")[1];
        Assert.Equal("timestep", timestep.GetProperty("name").GetString());
        Assert.Equal("float32", timestep.GetProperty("dtype").GetString());
        Assert.Equal(1, timestep.GetProperty("rank").GetInt32());
        var ids = root.GetProperty("components").GetProperty("text_encoder").GetProperty("inputs")[0];
        Assert.Equal("int32", ids.GetProperty("dtype").GetString());
        using var index = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(o, "model_index.json")));
        Assert.Equal("ORTStableDiffusionPipeline", index.RootElement.GetProperty("_class_name").GetString()); // Optimum's convention
        Assert.Equal("PNDMScheduler", index.RootElement.GetProperty("scheduler")[1].GetString());
        Assert.Equal(["transformers", "CLIPTokenizer"], index.RootElement.GetProperty("tokenizer").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("OnnxRuntimeModel", index.RootElement.GetProperty("vae_encoder")[1].GetString());
        Assert.Empty(Directory.EnumerateDirectories(Path.GetDirectoryName(o)!, ".onnx.*"));
    }
}

/// <summary>fp16 source weights: exported as fp32 (converted) and as fp16 (copied byte for byte), with identical results.</summary>
public sealed class Fp16SourceTests
{
    [Fact]
    public void Fp16_source_weights_export_to_fp32_and_fp16_with_the_same_results()
    {
        string root = TestModels.NewRoot();
        try
        {
            string half = Path.Combine(root, "unet-fp16.safetensors");
            using (var src = CTCal.Core.Safetensors.SafetensorsFile.Open(TestModels.UnetWeights))
            {
                var entries = src.Tensors.Select(t =>
                {
                    Half[] h = src.ReadAsFloat32(t.Name).Select(v => (Half)v).ToArray();
                    byte[] bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
                    return CTCal.Core.Safetensors.SafetensorsWriteEntry.FromBytes(t.Name, CTCal.Core.Safetensors.SafetensorsDType.F16, t.Shape, bytes);
                }).ToList();
                CTCal.Core.Safetensors.SafetensorsWriter.Write(half, entries);
            }
            string as32 = Path.Combine(root, "as32");
            string as16 = Path.Combine(root, "as16");
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = as32, Components = ExportComponents.Unet, UnetWeights = half });
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = as16, Components = ExportComponents.Unet, UnetWeights = half, Fp16 = true });
            float[] a = TestModels.RunUnet(as32);
            float[] b = TestModels.RunUnet(as16);
            Assert.True(OrtRunner.MaxAbsDiff(a, b) <= 1e-6f);
            var expected = TinySd1Export.Read("unet_io.safetensors", "out_sample_t999").Data;
            float[] c = TestModels.RunUnet(as32, 999f);
            Assert.True(OrtRunner.MaxAbsDiff(c, expected) / OrtRunner.MaxAbs(expected) <= 1e-2f);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

namespace CTCal.Export.Tests;

/// <summary>Bad inputs fail with messages naming what is wrong, before any output folder exists.</summary>
public sealed class BadInputTests
{
    private const string Victim = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight";

    private static void AssertNothingWritten(string root, string output)
    {
        Assert.False(Directory.Exists(output), "no output folder may be created");
        Assert.Empty(Directory.EnumerateDirectories(root, ".*"));
    }

    [Fact]
    public void Missing_tensor_is_named()
    {
        string root = TestModels.NewRoot();
        try
        {
            string unet = Path.Combine(root, "unet.safetensors");
            TestModels.Rewrite(TestModels.UnetWeights, unet, (name, shape, data) => name == Victim ? null : (shape, data));
            string output = Path.Combine(root, "out");
            var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, UnetWeights = unet,
            }));
            Assert.Contains($"missing tensor '{Victim}'", e.Message);
            Assert.Single(e.Problems);
            AssertNothingWritten(root, output);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Wrong_shape_is_named_with_both_shapes()
    {
        string root = TestModels.NewRoot();
        try
        {
            string unet = Path.Combine(root, "unet.safetensors");
            TestModels.Rewrite(TestModels.UnetWeights, unet, (name, shape, data) => name == Victim ? ([64, 16], data[..(64 * 16)]) : (shape, data));
            string output = Path.Combine(root, "out");
            var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, UnetWeights = unet, Components = ExportComponents.Unet,
            }));
            Assert.Contains($"'{Victim}' has shape [64,16]", e.Message);
            Assert.Contains("expected [64,32]", e.Message);
            AssertNothingWritten(root, output);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Unsupported_block_type_and_unreadable_config_are_named()
    {
        string root = TestModels.NewRoot();
        try
        {
            string model = TestModels.CopyTinySd1(root);
            string unetCfg = Path.Combine(model, "unet", "config.json");
            File.WriteAllText(unetCfg, File.ReadAllText(unetCfg).Replace("\"CrossAttnDownBlock2D\"", "\"SimpleCrossAttnDownBlock2D\""));
            File.WriteAllText(Path.Combine(model, "vae", "config.json"), "{ not json");
            string output = Path.Combine(root, "out");
            var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output }));
            Assert.Contains("down_block_types[0]", e.Message);
            Assert.Contains("SimpleCrossAttnDownBlock2D", e.Message);
            Assert.Contains(Path.Combine("vae", "config.json"), e.Message);
            AssertNothingWritten(root, output);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Missing_weights_file_and_pickle_only_folder_are_refused()
    {
        string root = TestModels.NewRoot();
        try
        {
            string model = TestModels.CopyTinySd1(root);
            string vaeWeights = Path.Combine(model, "vae", "diffusion_pytorch_model.safetensors");
            File.Move(vaeWeights, Path.Combine(model, "vae", "diffusion_pytorch_model.bin"));
            string output = Path.Combine(root, "out");
            var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = model, OutputFolder = output, Components = ExportComponents.VaeDecoder,
            }));
            Assert.Contains("diffusion_pytorch_model.bin", e.Message);
            Assert.Contains("pickle", e.Message); // why it is not read (Core's WeightFiles.PickleRefusal) ...
            Assert.Contains("Convert it to safetensors", e.Message); // ... and what to do instead
            AssertNothingWritten(root, output);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Output_inside_the_model_folder_is_refused()
    {
        var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = TinySd1Export.ModelFolder, OutputFolder = Path.Combine(TinySd1Export.ModelFolder, "onnx"),
        }));
        Assert.Contains("must not be, contain or lie inside the model folder", e.Message);
        Assert.False(Directory.Exists(Path.Combine(TinySd1Export.ModelFolder, "onnx")));
    }
}

/// <summary>VAE checkpoints with the pre-0.14 diffusers attention names still export, under the current initializer names.</summary>
public sealed class LegacyVaeNamesTests
{
    [Fact]
    public void Legacy_vae_attention_names_and_conv_shapes_are_accepted()
    {
        string root = TestModels.NewRoot();
        try
        {
            string model = TestModels.CopyTinySd1(root);
            string vae = Path.Combine(model, "vae", "diffusion_pytorch_model.safetensors");
            File.Delete(vae);
            TestModels.Rewrite(Path.Combine(TinySd1Export.ModelFolder, "vae", "diffusion_pytorch_model.safetensors"), vae, (name, shape, data) =>
                name.Contains(".attentions.0.to_q.weight", StringComparison.Ordinal) || name.Contains(".attentions.0.to_out.0.weight", StringComparison.Ordinal)
                    ? ([.. shape, 1, 1], data) : (shape, data));
            // rename: write again with legacy names
            string renamed = Path.Combine(root, "renamed.safetensors");
            using (var src = CTCal.Core.Safetensors.SafetensorsFile.Open(vae))
            {
                var entries = src.Tensors.Select(t => CTCal.Core.Safetensors.SafetensorsWriteEntry.FromFloat32(
                    t.Name.Replace(".to_q.", ".query.").Replace(".to_k.", ".key.").Replace(".to_v.", ".value.").Replace(".to_out.0.", ".proj_attn."),
                    t.Shape, src.ReadAsFloat32(t.Name))).ToList();
                CTCal.Core.Safetensors.SafetensorsWriter.Write(renamed, entries);
            }
            File.Move(renamed, vae, overwrite: true);

            string output = Path.Combine(root, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, Components = ExportComponents.VaeDecoder });
            var latents = TinySd1Export.Read("vae_io.safetensors", "latents");
            var decoded = TinySd1Export.Read("vae_io.safetensors", "decoded");
            using var ort = new OrtRunner(Path.Combine(output, "vae_decoder", "model.onnx"));
            var actual = ort.Run(("latent_sample", latents.Data, latents.Shape))["sample"];
            Assert.True(OrtRunner.MaxAbsDiff(actual.Data, decoded.Data) <= 1e-4f);
            var proto = CTCal.Export.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(output, "vae_decoder", "model.onnx")));
            var q = proto.Graph.Initializer.Single(t => t.Name == "decoder.mid_block.attentions.0.to_q.weight");
            Assert.Equal([64L, 64L], q.Dims.ToArray());
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

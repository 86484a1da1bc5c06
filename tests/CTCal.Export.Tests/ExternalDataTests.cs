using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx;
using CTCal.Export.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Export.Tests;

/// <summary>
/// A small model with the SD 1.5 UNet layout (SD 1.5's block types, layers per block, heads and channel progression
/// c, 2c, 4c, 4c, so its 686 tensors and their names; c = 32 instead of 320) and a 2048-wide cross-attention, so the to_k/to_v
/// weights are 256 KiB, 512 KiB and exactly 1 MiB at 32, 64 and 128 channels. Exported twice from the tiny-sd1 folder with this UNet:
/// with the external-data threshold lowered from its 2 GB default to 8 MB (UNet and VAE decoder), and with the default
/// (UNet only), so the automatic choice and the external-data layout are checked in seconds rather than on a 3.4 GB UNet.
/// </summary>
public sealed class Sd15LayoutModel : IDisposable
{
    public const long LoweredThreshold = 8_000_000;
    public const int CrossAttentionDim = 2048;

    public const string UNetConfigJson = """
    {
      "attention_head_dim": 8, "block_out_channels": [32, 64, 128, 128], "cross_attention_dim": 2048,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32
    }
    """;

    public Sd15LayoutModel()
    {
        Root = TestModels.NewRoot();
        ModelFolder = TestModels.CopyTinySd1(Root);
        string unet = Path.Combine(ModelFolder, "unet");
        File.WriteAllText(Path.Combine(unet, "config.json"), UNetConfigJson);
        var graph = UNetGraph.Build(UNetConfig.Load(Path.Combine(unet, "config.json")), false);
        UnetWeights = Path.Combine(unet, "diffusion_pytorch_model.safetensors");
        TestModels.WriteRandomWeights(UnetWeights, graph.Weights, seed: 15);

        External = Path.Combine(Root, "external");
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = ModelFolder, OutputFolder = External, Components = ExportComponents.Unet | ExportComponents.VaeDecoder,
            ExternalDataThreshold = LoweredThreshold,
        });
        Embedded = Path.Combine(Root, "embedded");
        OnnxExporter.Export(new ExportOptions { ModelFolder = ModelFolder, OutputFolder = Embedded, Components = ExportComponents.Unet });
    }

    public string Root { get; }

    public string ModelFolder { get; }

    public string UnetWeights { get; }

    /// <summary>Exported with the threshold at <see cref="LoweredThreshold"/>.</summary>
    public string External { get; }

    /// <summary>Exported with the default threshold.</summary>
    public string Embedded { get; }

    public void Dispose() => TestModels.DeleteQuietly(Root);
}

/// <summary>External data (README "Weights and memory"), IR version and opset, and the UNet's size rule on <see cref="Sd15LayoutModel"/>.</summary>
public sealed class ExternalDataTests(Sd15LayoutModel model) : IClassFixture<Sd15LayoutModel>
{
    private const long OneMiB = 1024 * 1024;
    private const long Alignment = 64 * 1024;

    private static long WeightBytes(string safetensors)
    {
        using var file = SafetensorsFile.Open(safetensors);
        return file.Tensors.Sum(t => t.ElementCount * 4);
    }

    [Fact]
    public void A_graph_whose_weights_exceed_the_threshold_gets_external_data_and_a_smaller_one_embeds_them()
    {
        Assert.Equal(2_000_000_000, new ExportOptions { ModelFolder = "m", OutputFolder = "o" }.ExternalDataThreshold); // "2 GB"
        long unet = WeightBytes(model.UnetWeights);
        long vae = WeightBytes(Path.Combine(model.ModelFolder, "vae", "diffusion_pytorch_model.safetensors"));
        Assert.True(unet > Sd15LayoutModel.LoweredThreshold && vae < Sd15LayoutModel.LoweredThreshold, $"unet {unet} B, vae {vae} B");

        // One export, two choices: the UNet (above the threshold) has model.onnx.data, the VAE decoder (below) has none.
        Assert.True(File.Exists(Path.Combine(model.External, "unet", "model.onnx.data")));
        Assert.True(new FileInfo(Path.Combine(model.External, "unet", "model.onnx")).Length < unet / 10, "unet weights were embedded");
        Assert.Equal(new[] { "config.json", "model.onnx" }, Directory.EnumerateFiles(Path.Combine(model.External, "vae_decoder")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        // Under the default threshold the same UNet embeds its weights.
        Assert.Equal(new[] { "config.json", "model.onnx" }, Directory.EnumerateFiles(Path.Combine(model.Embedded, "unet")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.True(new FileInfo(Path.Combine(model.Embedded, "unet", "model.onnx")).Length > unet);
    }

    [Fact]
    public void External_data_holds_every_weight_at_its_offset_and_tensors_of_1_MiB_or_more_start_on_64_KiB()
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(model.External, "unet", "model.onnx")));
        byte[] data = File.ReadAllBytes(Path.Combine(model.External, "unet", "model.onnx.data"));
        using var weights = SafetensorsFile.Open(model.UnetWeights);
        int aligned = 0, small = 0;
        foreach (var init in proto.Graph.Initializer.Where(t => !t.Name.StartsWith("const_", StringComparison.Ordinal)))
        {
            Assert.Equal(TensorProto.Types.DataLocation.External, init.DataLocation);
            Assert.True(init.RawData.IsEmpty, $"{init.Name} has raw_data besides external data");
            var entries = init.ExternalData.ToDictionary(e => e.Key, e => e.Value);
            Assert.Equal("model.onnx.data", entries["location"]); // relative, beside model.onnx
            long offset = long.Parse(entries["offset"], System.Globalization.CultureInfo.InvariantCulture);
            long length = long.Parse(entries["length"], System.Globalization.CultureInfo.InvariantCulture);
            var source = weights.GetBytes(init.Name);
            Assert.Equal(source.Length, length);
            Assert.True(data.AsSpan((int)offset, (int)length).SequenceEqual(source), $"bytes of {init.Name} differ");
            if (length >= OneMiB)
            {
                Assert.True(offset % Alignment == 0, $"{init.Name} ({length} B) starts at {offset}, not a multiple of 64 KiB");
                aligned++;
            }
            else
            {
                small++;
            }
        }
        // Every tensor of 1 MiB or more in the source (e.g. to_k/to_v at 128 channels: 128 x 2048 x 4 B) was checked.
        Assert.Equal(weights.Tensors.Count(t => t.ElementCount * 4 >= OneMiB), aligned);
        Assert.True(aligned >= 12 && small > 600, $"{aligned} tensors of 1 MiB or more, {small} smaller ones");
    }

    [Fact]
    public void Initializers_carry_the_sd15_state_dict_names()
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(model.External, "unet", "model.onnx")));
        var names = proto.Graph.Initializer.Select(t => t.Name).Where(n => !n.StartsWith("const_", StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(686, names.Count); // the SD 1.5 UNet state dict has 686 tensors
        using var weights = SafetensorsFile.Open(model.UnetWeights);
        Assert.Equal(weights.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), names.Order(StringComparer.Ordinal));
        foreach (string name in new[]
                 {
                     "conv_in.weight", "time_embedding.linear_1.weight", "time_embedding.linear_2.bias",
                     "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                     "down_blocks.2.attentions.1.proj_out.weight", "down_blocks.2.downsamplers.0.conv.weight",
                     "down_blocks.3.resnets.1.conv2.weight", "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
                     "mid_block.resnets.1.time_emb_proj.weight", "up_blocks.0.upsamplers.0.conv.weight",
                     "up_blocks.1.attentions.2.transformer_blocks.0.norm3.weight", "up_blocks.3.resnets.2.conv_shortcut.weight",
                     "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0.bias", "conv_norm_out.weight", "conv_out.bias",
                 })
        {
            Assert.Contains(name, names);
        }
    }

    [Fact]
    public void Every_written_model_is_ir_version_8_with_opset_17()
    {
        foreach (string file in new[] { "external/unet", "external/vae_decoder", "embedded/unet" }.Select(p => Path.Combine(model.Root, p, "model.onnx")))
        {
            var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(file));
            Assert.Equal(8, proto.IrVersion);
            Assert.Equal(17, Assert.Single(proto.OpsetImport).Version);
        }
    }

    private static (float[] Sample, float[] Context) Inputs(int height, int width)
    {
        var rng = new Random(3);
        return (Enumerable.Range(0, 4 * height * width).Select(_ => rng.NextSingle() * 2 - 1).ToArray(),
            Enumerable.Range(0, 77 * Sd15LayoutModel.CrossAttentionDim).Select(_ => rng.NextSingle() * 2 - 1).ToArray());
    }

    private static float[] RunUnet(OrtRunner ort, int height, int width)
    {
        var (sample, context) = Inputs(height, width);
        var result = ort.Run(("sample", sample, [1, 4, height, width]), ("timestep", new[] { 700f }, [1]),
            ("encoder_hidden_states", context, [1, 77, Sd15LayoutModel.CrossAttentionDim]))["out_sample"];
        Assert.Equal([1, 4, height, width], result.Shape);
        return result.Data;
    }

    [Fact]
    public void External_and_embedded_weights_give_the_same_outputs()
    {
        using var external = new OrtRunner(Path.Combine(model.External, "unet", "model.onnx"));
        using var embedded = new OrtRunner(Path.Combine(model.Embedded, "unet", "model.onnx"));
        var a = RunUnet(external, 8, 8);
        Assert.All(a, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(a, RunUnet(embedded, 8, 8));
    }

    [Theory]
    [InlineData(8, 8, true)]
    [InlineData(8, 24, true)]   // 24 = 3 x 8: a multiple of 2^(4-1) that is not a power of two
    [InlineData(16, 40, true)]  // 40 = 5 x 8
    [InlineData(12, 8, false)]  // 12 is a multiple of 4 but not of 8
    [InlineData(8, 4, false)]
    [InlineData(20, 20, false)]
    public void Latent_height_and_width_must_be_multiples_of_2_to_the_levels_minus_1(int height, int width, bool runs)
    {
        // Four levels: the sample is halved three times and doubled three times, so the sides must be multiples of 8.
        using var ort = new OrtRunner(Path.Combine(model.Embedded, "unet", "model.onnx"));
        if (runs)
            Assert.All(RunUnet(ort, height, width), v => Assert.True(float.IsFinite(v)));
        else
            Assert.Throws<OnnxRuntimeException>(() => RunUnet(ort, height, width));
    }
}

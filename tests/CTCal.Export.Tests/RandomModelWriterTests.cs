using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Export.Fixtures;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>
/// <see cref="RandomModelWriter"/>, the code path of <c>ctcal-export make-model</c>, run on scaled-down copies of the
/// full-size configurations (the tiny SD1/SD2 networks with the real configs' scheduler, index and tokenizer files): the
/// folder opens as a complete diffusers folder, exports, and runs finite in ONNX Runtime in fp32 and fp16; weights are a
/// function of the seed and the tensor name.
/// </summary>
public sealed class RandomModelWriterTests : IDisposable
{
    private readonly string _root = TestModels.NewRoot();

    private static string ClipTokenizer => Path.Combine(TestPaths.Fixtures, "clip-tokenizer");

    public void Dispose() => TestModels.DeleteQuietly(_root);

    /// <summary>A full-size reference with its networks replaced by the tiny ones (vocab_size kept at CLIP's 49408).</summary>
    internal static ReferenceModel Tiny(ReferenceModel full, TinyConfigs tiny) => full with
    {
        Kind = full.Kind + "-tiny",
        UnetConfigJson = tiny.UNet,
        VaeConfigJson = tiny.Vae,
        TextEncoderConfigJson = tiny.TextEncoder.Replace("\"vocab_size\": 1000", "\"vocab_size\": 49408", StringComparison.Ordinal),
    };

    public static TheoryData<string, string> Cases() => new()
    {
        { "sd15", "fp32" },
        { "sd21", "fp16" },
        { "sd21-base", "fp32" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Scaled_down_folder_opens_exports_and_runs_finite(string kind, string dtype)
    {
        var full = ReferenceModels.Get(kind);
        var tinyConfigs = full.TextEncoder.HiddenAct == "gelu" ? TinyConfigs.Sd2 : TinyConfigs.Sd1;
        var model = Tiny(full, tinyConfigs);
        var st = dtype == "fp16" ? SafetensorsDType.F16 : SafetensorsDType.F32;
        string folder = Path.Combine(_root, kind);
        var result = RandomModelWriter.Write(model, folder, seed: 7, ClipTokenizer, st);

        Assert.Equal(folder, result.Folder);
        Assert.Empty(Directory.GetDirectories(_root, ".*")); // the staging folder was renamed into place
        var opened = ModelFolder.Open(folder); // every component, tokenizer and scheduler
        Assert.Equal(full.Scheduler.PredictionType, SchedulerConfigOf(opened).PredictionType);
        using (var unet = SafetensorsFile.Open(opened.Unet.WeightsPath))
        {
            Assert.Equal(RandomModelWriter.Tensors(model, "unet").Select(t => t.Name).Order(StringComparer.Ordinal), unet.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            Assert.All(unet.Tensors, t => Assert.Equal(st, t.DType));
        }

        string onnx = Path.Combine(_root, kind + "-onnx");
        OnnxExporter.Export(new ExportOptions { ModelFolder = folder, OutputFolder = onnx });
        Assert.Equal(full.TextEncoder.HiddenAct == "gelu" ? ModelFamily.Sd2 : ModelFamily.Sd1, OnnxModelManifest.TryRead(onnx)!.Family);

        int length = model.TextEncoder.MaxPositionEmbeddings;
        int[] ids = new int[length];
        ids[0] = 49406;
        ids[1] = 320; // "a"
        ids[2] = 49407;
        for (int i = 3; i < length; i++) ids[i] = full.SpecialTokensMapJson.Contains("\"pad_token\": \"!\"", StringComparison.Ordinal) ? 0 : 49407;
        using (var text = new OrtRunner(Path.Combine(onnx, "text_encoder", "model.onnx")))
        {
            var hidden = text.Run(("input_ids", ids, [1, length]))["last_hidden_state"];
            Assert.All(hidden.Data, v => Assert.True(float.IsFinite(v)));
        }

        var unetConfig = model.Unet;
        int h = tinyConfigs.LatentHeight, w = tinyConfigs.LatentWidth;
        var rng = new Random(1);
        float[] sample = Enumerable.Range(0, 4 * h * w).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        float[] context = Enumerable.Range(0, 77 * unetConfig.CrossAttentionDim).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        using (var unet = new OrtRunner(Path.Combine(onnx, "unet", "model.onnx")))
        {
            var output = unet.Run(("sample", sample, [1, 4, h, w]), ("timestep", new[] { 500f }, [1]), ("encoder_hidden_states", context, [1, 77, unetConfig.CrossAttentionDim]))["out_sample"];
            Assert.All(output.Data, v => Assert.True(float.IsFinite(v)));
            Assert.Contains(output.Data, v => v != 0f);
        }
    }

    [Fact]
    public void Weights_depend_only_on_seed_and_tensor_name()
    {
        var model = Tiny(ReferenceModels.Sd15, TinyConfigs.Sd1);
        string a = RandomModelWriter.Write(model, Path.Combine(_root, "a"), 3, ClipTokenizer, components: ["vae"]).Folder;
        string b = RandomModelWriter.Write(model, Path.Combine(_root, "b"), 3, ClipTokenizer, components: ["vae"]).Folder;
        string c = RandomModelWriter.Write(model, Path.Combine(_root, "c"), 4, ClipTokenizer, components: ["vae"]).Folder;
        string Vae(string f) => Path.Combine(f, "vae", "diffusion_pytorch_model.safetensors");
        Assert.Equal(File.ReadAllBytes(Vae(a)), File.ReadAllBytes(Vae(b)));
        Assert.NotEqual(File.ReadAllBytes(Vae(a)), File.ReadAllBytes(Vae(c)));

        // one tensor alone gets the same values as inside the whole file
        var tensor = RandomModelWriter.Tensors(model, "vae").First(t => t.Name == "decoder.conv_in.weight");
        string single = Path.Combine(_root, "single.safetensors");
        RandomWeights.Write(single, [tensor], 3);
        using var whole = SafetensorsFile.Open(Vae(a));
        using var alone = SafetensorsFile.Open(single);
        Assert.Equal(whole.ReadAsFloat32("decoder.conv_in.weight"), alone.ReadAsFloat32("decoder.conv_in.weight"));
    }

    [Fact]
    public void Init_is_ones_for_norm_weights_zeros_for_biases_and_fan_in_scaled_otherwise()
    {
        Assert.Equal((1f, 0f), RandomWeights.InitFor(new("down_blocks.0.resnets.0.norm1.weight", [320])));
        Assert.Equal((0f, 0f), RandomWeights.InitFor(new("down_blocks.0.resnets.0.norm1.bias", [320])));
        Assert.Equal((0f, 0f), RandomWeights.InitFor(new("conv_in.bias", [320])));
        Assert.Equal((0f, 1f / 6f), RandomWeights.InitFor(new("conv_in.weight", [320, 4, 3, 3])));
        Assert.Equal((0f, 0.02f), RandomWeights.InitFor(new("text_model.embeddings.token_embedding.weight", [49408, 768])));
    }

    [Fact]
    public void Transformer_folder_holds_the_tensors_of_a_diffusers_save_and_exports()
    {
        // the tiny-sd3 fixture: a diffusers 0.29.2 SD3Transformer2DModel saved by diffusers itself
        string fixture = Path.Combine(TestPaths.Fixtures, "sd3", "tiny-sd3", "transformer");
        string output = Path.Combine(_root, "sd3");
        var result = RandomModelWriter.WriteTransformer(File.ReadAllText(Path.Combine(fixture, "config.json")), output, 1);

        using var written = SafetensorsFile.Open(Path.Combine(output, "transformer", "diffusion_pytorch_model.safetensors"));
        using var real = SafetensorsFile.Open(Path.Combine(fixture, "diffusion_pytorch_model.safetensors"));
        static string[] Keys(SafetensorsFile f) =>
            f.Tensors.Select(t => $"{t.Name} [{string.Join(", ", t.Shape)}]").Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(Keys(real), Keys(written));
        Assert.Equal(real.Tensors.Sum(t => t.ElementCount) * 4, result.TotalWeightBytes);

        OnnxExporter.Export(new ExportOptions { ModelFolder = output, OutputFolder = Path.Combine(_root, "sd3-onnx"), Components = ExportComponents.Transformer });
        Assert.True(File.Exists(Path.Combine(_root, "sd3-onnx", "transformer", "model.onnx")));
    }

    [Fact]
    public void Refuses_a_non_empty_output_and_a_tokenizer_the_text_encoder_cannot_embed()
    {
        var model = Tiny(ReferenceModels.Sd15, TinyConfigs.Sd1);
        string taken = Path.Combine(_root, "taken");
        Directory.CreateDirectory(taken);
        File.WriteAllText(Path.Combine(taken, "x.txt"), "x");
        var e = Assert.Throws<IOException>(() => RandomModelWriter.Write(model, taken, 1, ClipTokenizer));
        Assert.Contains(taken, e.Message, StringComparison.Ordinal);

        var small = model with { TextEncoderConfigJson = TinyConfigs.Sd1.TextEncoder }; // vocab_size 1000
        var v = Assert.Throws<InvalidDataException>(() => RandomModelWriter.Write(small, Path.Combine(_root, "small"), 1, ClipTokenizer));
        Assert.Contains("vocab.json", v.Message, StringComparison.Ordinal);
        Assert.Contains("vocab_size is 1000", v.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_root, "small")));
    }

    private static Core.Schedulers.SchedulerConfig SchedulerConfigOf(ModelFolder folder) => Core.Schedulers.SchedulerConfig.Load(folder.SchedulerConfigPath);
}

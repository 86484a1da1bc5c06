using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Weights;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// Original single-file checkpoints: a tiny diffusers folder written as a single file through the key map and read back
/// gives identical tensors under every diffusers name (both families, fp32/fp16/bf16, with and without EMA keys); family
/// and config detection; refusals that name the file and key.
/// </summary>
public sealed class SingleFileCheckpointTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Fixture(string family) => family == ModelFamily.Sd2 ? TestWeightFolders.TinySd2 : TestWeightFolders.TinySd1;

    public static TheoryData<string, SafetensorsDType, bool> RoundTrips()
    {
        var data = new TheoryData<string, SafetensorsDType, bool>();
        foreach (string family in new[] { ModelFamily.Sd1, ModelFamily.Sd2 })
            foreach (var dtype in new[] { SafetensorsDType.F32, SafetensorsDType.F16, SafetensorsDType.BF16 })
                foreach (bool ema in new[] { false, true })
                    data.Add(family, dtype, ema);
        return data;
    }

    [Theory]
    [MemberData(nameof(RoundTrips))]
    public void Folder_to_single_file_to_diffusers_names_gives_identical_tensors(string family, SafetensorsDType dtype, bool withEma)
    {
        string folder = TestWeightFolders.Copy(Fixture(family), Path.Combine(_dir, "folder"), dtype);
        string file = TestWeightFolders.WriteSingleFile(folder, Path.Combine(_dir, "model.safetensors"), family,
            withEma ? (map, sources) => TestWeightFolders.EmaCopy(map, sources, 1f).ToList() : null);

        var checkpoint = SingleFileCheckpoint.Open(file, new SingleFileOptions { ConfigFolder = folder });
        Assert.Equal(family, checkpoint.Family);
        Assert.Equal(withEma, checkpoint.HasEma);
        Assert.False(checkpoint.UsesEma);
        foreach (string component in TestWeightFolders.Components)
        {
            using var expected = TensorSource.OpenComponent(Path.Combine(folder, component));
            using var actual = checkpoint.OpenWeights(component);
            Assert.Equal(expected.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), actual.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            foreach (var e in expected.Tensors)
            {
                var a = actual.GetInfo(e.Name);
                Assert.Equal(e.Shape, a.Shape);
                Assert.Equal(dtype, a.DType);
                Assert.True(TestWeightFolders.Bytes(expected, e.Name).AsSpan().SequenceEqual(TestWeightFolders.Bytes(actual, e.Name)), $"{component} {e.Name} differs");
                Assert.Equal(expected.ReadAsFloat32(e.Name), actual.ReadAsFloat32(e.Name));
            }
        }
    }

    [Theory]
    [InlineData(ModelFamily.Sd1)]
    [InlineData(ModelFamily.Sd2)]
    public void Ema_weights_are_read_only_when_asked_for(string family)
    {
        string file = TestWeightFolders.WriteSingleFile(Fixture(family), Path.Combine(_dir, "ema.safetensors"), family,
            (map, sources) => TestWeightFolders.EmaCopy(map, sources, 0.5f).ToList());
        var plain = SingleFileCheckpoint.Open(file, new SingleFileOptions { ConfigFolder = Fixture(family) });
        var ema = SingleFileCheckpoint.Open(file, new SingleFileOptions { ConfigFolder = Fixture(family), UseEma = true });
        Assert.True(ema.UsesEma);
        using var folder = TensorSource.OpenComponent(Path.Combine(Fixture(family), "unet"));
        using var a = plain.OpenWeights("unet");
        using var b = ema.OpenWeights("unet");
        foreach (var t in folder.Tensors)
        {
            float[] expected = folder.ReadAsFloat32(t.Name);
            Assert.Equal(expected, a.ReadAsFloat32(t.Name));
            Assert.Equal(expected.Select(v => v + 0.5f), b.ReadAsFloat32(t.Name));
        }
        // the VAE and text encoder have no EMA copy and are read as they are
        using var vae = ema.OpenWeights("vae");
        using var folderVae = TensorSource.OpenComponent(Path.Combine(Fixture(family), "vae"));
        Assert.Equal(folderVae.ReadAsFloat32("decoder.conv_out.weight"), vae.ReadAsFloat32("decoder.conv_out.weight"));
    }

    [Fact]
    public void Asking_for_ema_weights_in_a_file_without_them_is_an_error_naming_the_file()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_dir, "plain.safetensors"), ModelFamily.Sd1);
        var e = Assert.Throws<ModelFolderException>(() => SingleFileCheckpoint.Open(file, new SingleFileOptions { UseEma = true }));
        Assert.Contains(file, e.Message);
        Assert.Contains("model_ema", e.Message);
    }

    [Fact]
    public void Sd2_file_is_read_with_fused_qkv_split_and_the_last_openclip_block_dropped()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd2, Path.Combine(_dir, "sd2.safetensors"), ModelFamily.Sd2);
        using (var raw = SafetensorsFile.Open(file))
        {
            Assert.True(raw.Contains("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"));
            Assert.Equal([120L, 40], raw.GetInfo("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight").Shape);
            Assert.False(raw.Contains("cond_stage_model.model.transformer.resblocks.0.attn.q_proj.weight"));
            Assert.True(raw.Contains("cond_stage_model.model.transformer.resblocks.2.ln_1.weight"));
            long[] q = raw.GetInfo("first_stage_model.decoder.mid.attn_1.q.weight").Shape;
            Assert.Equal([q[0], q[0], 1, 1], q);
        }
        var checkpoint = SingleFileCheckpoint.Open(file); // configs derived from the shapes
        Assert.Equal(ModelFamily.Sd2, checkpoint.Family);
        var text = checkpoint.TextEncoderConfig;
        Assert.Equal(2, text.NumHiddenLayers);
        Assert.Equal(40, text.HiddenSize);
        Assert.Equal(37, text.IntermediateSize);
        Assert.Equal("gelu", text.HiddenAct);
        using var weights = checkpoint.OpenWeights("text_encoder");
        Assert.DoesNotContain(weights.Tensors, t => t.Name.Contains("layers.2.", StringComparison.Ordinal));
        Assert.Equal([40L, 40], weights.GetInfo("text_model.encoder.layers.1.self_attn.v_proj.weight").Shape);
    }

    [Theory]
    [InlineData(ModelFamily.Sd1)]
    [InlineData(ModelFamily.Sd2)]
    public void Configs_derived_from_the_weights_match_the_folder_where_weights_decide(string family)
    {
        string folder = Fixture(family);
        string file = TestWeightFolders.WriteSingleFile(folder, Path.Combine(_dir, "derive.safetensors"), family);
        var checkpoint = SingleFileCheckpoint.Open(file);
        var unet = checkpoint.UNetConfig;
        var expected = UNetConfig.Load(Path.Combine(folder, "unet", "config.json"));
        Assert.Equal(expected.BlockOutChannels, unet.BlockOutChannels);
        Assert.Equal(expected.DownBlockTypes, unet.DownBlockTypes);
        Assert.Equal(expected.UpBlockTypes, unet.UpBlockTypes);
        Assert.Equal(expected.LayersPerBlock, unet.LayersPerBlock);
        Assert.Equal(expected.CrossAttentionDim, unet.CrossAttentionDim);
        Assert.Equal(expected.UseLinearProjection, unet.UseLinearProjection);
        Assert.Equal(expected.InChannels, unet.InChannels);
        Assert.Equal(expected.OutChannels, unet.OutChannels);
        var vae = checkpoint.VaeConfig;
        var expectedVae = VaeConfig.Load(Path.Combine(folder, "vae", "config.json"));
        Assert.Equal(expectedVae.BlockOutChannels, vae.BlockOutChannels);
        Assert.Equal(expectedVae.LayersPerBlock, vae.LayersPerBlock);
        Assert.Equal(expectedVae.LatentChannels, vae.LatentChannels);
        var text = checkpoint.TextEncoderConfig;
        var expectedText = ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json"));
        Assert.Equal(expectedText.HiddenSize, text.HiddenSize);
        Assert.Equal(expectedText.NumHiddenLayers, text.NumHiddenLayers);
        Assert.Equal(expectedText.HiddenAct, text.HiddenAct);
        Assert.Equal(expectedText.VocabSize, text.VocabSize);
        Assert.Equal(ModelFamily.Detect(unet, text), family);

        // prediction type: the weights cannot tell; SD 2.x assumes v_prediction (768-v), SD 1.x epsilon; an option overrides
        Assert.True(checkpoint.PredictionTypeAssumed);
        Assert.Equal(family == ModelFamily.Sd2 ? "v_prediction" : "epsilon", checkpoint.SchedulerConfig.PredictionType);
        Assert.Contains(checkpoint.Notes, n => n.Contains("prediction type", StringComparison.Ordinal));
        Assert.Equal((family == ModelFamily.Sd2 ? 768 : 512) / vae.DownscaleFactor, unet.SampleSize);
        var overridden = SingleFileCheckpoint.Open(file, new SingleFileOptions { PredictionType = "epsilon", ImageSize = 512 });
        Assert.False(overridden.PredictionTypeAssumed);
        Assert.Equal("epsilon", overridden.SchedulerConfig.PredictionType);
        Assert.Equal(512 / vae.DownscaleFactor, overridden.UNetConfig.SampleSize);

        // derived configs map every key of the file too
        using var weights = checkpoint.OpenWeights("unet");
        Assert.Equal(checkpoint.Entries("unet").Count, weights.Tensors.Count);
    }

    [Fact]
    public void Tokenizer_comes_from_the_options_and_its_absence_is_explained()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_dir, "tok.safetensors"), ModelFamily.Sd1);
        var none = SingleFileCheckpoint.Open(file);
        var e = Assert.Throws<ModelFolderException>(() => none.Tokenizer);
        Assert.Contains("--tokenizer", e.Message);
        Assert.Contains(file, e.Message);
        var given = SingleFileCheckpoint.Open(file, new SingleFileOptions { TokenizerFolder = Path.Combine(TestPaths.Fixtures, "clip-tokenizer") });
        Assert.True(File.Exists(given.Tokenizer.VocabPath));
        Assert.Throws<ModelFolderException>(() => SingleFileCheckpoint.Open(file, new SingleFileOptions { TokenizerFolder = _dir }));
    }

    [Theory]
    [InlineData("model.ckpt")]
    [InlineData("model.pt")]
    [InlineData("model.bin")]
    public void Pickle_checkpoints_are_refused_with_the_reason_and_what_to_use(string name)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, [0x80, 0x02]);
        var e = Assert.Throws<ModelFolderException>(() => SingleFileCheckpoint.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("pickle", e.Message);
        Assert.Contains("safetensors", e.Message);
    }

    [Fact]
    public void Unknown_keys_inside_a_component_are_an_error_naming_the_file_and_the_key()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_dir, "odd.safetensors"), ModelFamily.Sd1,
            (_, _) => [SafetensorsWriteEntry.FromFloat32("model.diffusion_model.label_emb.0.0.weight", [2], [1f, 2f])]);
        var e = Assert.Throws<ModelFolderException>(() => SingleFileCheckpoint.Open(file, new SingleFileOptions { ConfigFolder = TestWeightFolders.TinySd1 }));
        Assert.Contains(file, e.Message);
        Assert.Contains("model.diffusion_model.label_emb.0.0.weight", e.Message);
    }

    [Fact]
    public void A_file_that_is_not_an_original_checkpoint_is_refused()
    {
        string path = Path.Combine(_dir, "diffusers-names.safetensors");
        File.Copy(Path.Combine(TestWeightFolders.TinySd1, "unet", "diffusion_pytorch_model.safetensors"), path);
        var e = Assert.Throws<ModelFolderException>(() => SingleFileCheckpoint.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("cond_stage_model", e.Message);
        Assert.Null(SingleFileCheckpoint.DetectFamily(["model.diffusion_model.out.2.weight"]));
        Assert.Equal(ModelFamily.Sd1, SingleFileCheckpoint.DetectFamily(["cond_stage_model.transformer.text_model.final_layer_norm.weight"]));
        Assert.Equal(ModelFamily.Sd2, SingleFileCheckpoint.DetectFamily(["cond_stage_model.model.transformer.resblocks.0.ln_1.weight"]));
    }
}

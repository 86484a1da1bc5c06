using CTCal.Core.Diffusers;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

public sealed class DiffusersConfigTests
{
    private static string Tiny(params string[] parts) => Path.Combine([TestPaths.Fixtures, "tiny-sd1", .. parts]);

    [Fact]
    public void TinyUNetConfig()
    {
        string path = Tiny("unet", "config.json");
        var c = UNetConfig.Load(path);
        Assert.Equal(path, c.File);
        Assert.Equal([32, 64], c.BlockOutChannels);
        Assert.Equal(["CrossAttnDownBlock2D", "DownBlock2D"], c.DownBlockTypes);
        Assert.Equal(["UpBlock2D", "CrossAttnUpBlock2D"], c.UpBlockTypes);
        Assert.Equal("UNetMidBlock2DCrossAttn", c.MidBlockType);
        Assert.Equal(1, c.LayersPerBlock);
        Assert.Equal(32, c.CrossAttentionDim);
        // attention_head_dim 4 with num_attention_heads null: diffusers uses it as the number of heads.
        Assert.Equal([4, 4], c.NumAttentionHeads);
        Assert.Equal(4, c.MidBlockHeads);
        Assert.Equal([1, 1], c.TransformerLayersPerBlock);
        Assert.Equal(8, c.NormNumGroups);
        Assert.Equal(1e-5, c.NormEps);
        Assert.Equal(16, c.SampleSize);
        Assert.Equal(4, c.InChannels);
        Assert.Equal(4, c.OutChannels);
        Assert.True(c.FlipSinToCos);
        Assert.Equal(0, c.FreqShift);
        Assert.False(c.UseLinearProjection);
        Assert.Equal(128, c.TimeEmbeddingDim);
        Assert.Equal([false, false], c.OnlyCrossAttention);
    }

    [Fact]
    public void TinyVaeConfig()
    {
        var c = VaeConfig.Load(Tiny("vae", "config.json"));
        Assert.Equal([32, 64], c.BlockOutChannels);
        Assert.Equal(4, c.LatentChannels);
        Assert.Equal(3, c.InChannels);
        Assert.Equal(3, c.OutChannels);
        Assert.Equal(1, c.LayersPerBlock);
        Assert.Equal(16, c.NormNumGroups);
        Assert.Equal(32, c.SampleSize);
        Assert.Equal(0.18215, c.ScalingFactor);
        Assert.Equal(2, c.DownscaleFactor);
        Assert.True(c.MidBlockAddAttention);
    }

    [Fact]
    public void TinyTextEncoderConfig()
    {
        var c = ClipTextConfig.Load(Tiny("text_encoder", "config.json"));
        Assert.Equal(49408, c.VocabSize);
        Assert.Equal(32, c.HiddenSize);
        Assert.Equal(37, c.IntermediateSize);
        Assert.Equal(2, c.NumHiddenLayers);
        Assert.Equal(4, c.NumAttentionHeads);
        Assert.Equal(8, c.HeadDim);
        Assert.Equal("quick_gelu", c.HiddenAct);
        Assert.Equal(2, c.EosTokenId);
        Assert.True(c.LegacyArgmaxPooling);
        Assert.Equal(32, c.ProjectionDim);
    }

    [Fact]
    public void TinyModelIndex()
    {
        var index = ModelIndex.Load(Tiny("model_index.json"));
        Assert.Equal("StableDiffusionPipeline", index.ClassName);
        Assert.Equal("0.27.2", index.DiffusersVersion);
        Assert.Equal(new ModelIndexComponent("diffusers", "UNet2DConditionModel"), index.GetComponent("unet"));
        Assert.Equal(new ModelIndexComponent("diffusers", "AutoencoderKL"), index.GetComponent("vae"));
        Assert.Equal(new ModelIndexComponent("transformers", "CLIPTextModel"), index.GetComponent("text_encoder"));
        Assert.Equal(new ModelIndexComponent("transformers", "CLIPTokenizer"), index.GetComponent("tokenizer"));
        Assert.Equal(new ModelIndexComponent("diffusers", "PNDMScheduler"), index.GetComponent("scheduler"));
        Assert.False(index.HasComponent("safety_checker"));
        Assert.False(index.Components["feature_extractor"].IsPresent);
        Assert.Equal(7, index.Components.Count);
        Assert.Equal("false", index.OtherFields["requires_safety_checker"]);
        var ex = Assert.Throws<DiffusersConfigException>(() => index.GetComponent("safety_checker"));
        Assert.Contains("model_index.json", ex.Message);
        Assert.Contains("safety_checker", ex.Message);
    }

    [Fact]
    public void ModelIndexNullEntryAndErrors()
    {
        var index = ModelIndex.Parse("""{"_class_name":"P","unet":["diffusers","UNet2DConditionModel"],"safety_checker":null,"vae":[null,"AutoencoderKL"]}""");
        Assert.Null(index.DiffusersVersion);
        Assert.False(index.HasComponent("safety_checker"));
        Assert.True(index.HasComponent("vae"));
        Assert.Null(index.GetComponent("vae").Library);

        AssertConfigError(() => ModelIndex.Parse("""{"unet":["diffusers","UNet2DConditionModel"]}""", "my/model_index.json"), "my/model_index.json", "_class_name");
        AssertConfigError(() => ModelIndex.Parse("""{"_class_name":3}"""), "model_index.json", "_class_name");
        AssertConfigError(() => ModelIndex.Parse("""{"_class_name":"P","unet":["diffusers"]}"""), "model_index.json", "unet");
        AssertConfigError(() => ModelIndex.Parse("""{"_class_name":"P","unet":["diffusers",5]}"""), "model_index.json", "unet[1]");
        AssertConfigError(() => ModelIndex.Parse("""[1]"""), "model_index.json", null);
    }

    private static DiffusersConfigException AssertConfigError(Action parse, string file, string? field, string? part = null)
    {
        var ex = Assert.Throws<DiffusersConfigException>(parse);
        Assert.Contains(file, ex.Message);
        Assert.Equal(file, ex.File);
        if (field is not null)
        {
            Assert.Contains($"'{field}'", ex.Message);
            Assert.Equal(field, ex.Field);
        }
        if (part is not null) Assert.Contains(part, ex.Message);
        return ex;
    }

    private const string MinimalUNet = """
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "norm_num_groups": 8
        """;

    private static UNetConfig UNet(string extra) => UNetConfig.Parse("{" + MinimalUNet + (extra.Length > 0 ? "," + extra : "") + "}");

    [Fact]
    public void AttentionHeadDimAsIntIsTheHeadCountOfEveryBlock() => Assert.Equal([4, 4], UNet("\"attention_head_dim\": 4").NumAttentionHeads);

    [Fact]
    public void AttentionHeadDimAsPerBlockList()
    {
        var c = UNet("\"attention_head_dim\": [2, 8]");
        Assert.Equal([2, 8], c.NumAttentionHeads);
        Assert.Equal(8, c.MidBlockHeads);
        Assert.Equal(8, c.UpBlockHeads(0)); // up path reverses the list
        Assert.Equal(2, c.UpBlockHeads(1));
    }

    [Fact]
    public void AttentionHeadDimListOfWrongLengthNamesTheField() =>
        AssertConfigError(() => UNet("\"attention_head_dim\": [2, 4, 8]"), "unet/config.json", "attention_head_dim", "3 entries");

    [Fact]
    public void NumAttentionHeadsTakesPrecedence()
    {
        Assert.Equal([2, 2], UNet("\"attention_head_dim\": 16, \"num_attention_heads\": 2").NumAttentionHeads);
        Assert.Equal([1, 4], UNet("\"attention_head_dim\": [8, 8], \"num_attention_heads\": [1, 4]").NumAttentionHeads);
        Assert.Equal([4, 4], UNet("\"attention_head_dim\": 4, \"num_attention_heads\": null").NumAttentionHeads);
    }

    [Fact]
    public void DefaultHeadCountIsEight() => Assert.Equal([8, 8], UNet("").NumAttentionHeads);

    [Theory]
    [InlineData("block_out_channels")]
    [InlineData("down_block_types")]
    [InlineData("up_block_types")]
    public void MissingRequiredUNetFieldNamesFileAndField(string field)
    {
        string json = "{" + string.Join(",", MinimalUNet.Split('\n').Where(l => !l.Contains($"\"{field}\"")).Select(l => l.TrimEnd(',', ' ', '\r'))) + "}";
        var ex = AssertConfigError(() => UNetConfig.Parse(json, "models/x/unet/config.json"), "models/x/unet/config.json", field, "missing");
        Assert.Equal(field, ex.Field);
    }

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("intermediate_size")]
    [InlineData("num_hidden_layers")]
    [InlineData("num_attention_heads")]
    public void MissingRequiredClipFieldNamesFileAndField(string field)
    {
        var fields = new Dictionary<string, string>
        {
            ["hidden_size"] = "32", ["intermediate_size"] = "37", ["num_hidden_layers"] = "2", ["num_attention_heads"] = "4",
        };
        fields.Remove(field);
        string json = "{" + string.Join(",", fields.Select(kv => $"\"{kv.Key}\":{kv.Value}")) + "}";
        AssertConfigError(() => ClipTextConfig.Parse(json), "text_encoder/config.json", field, "missing");
    }

    [Fact]
    public void MissingVaeFieldNamesFileAndField() =>
        AssertConfigError(() => VaeConfig.Parse("{\"latent_channels\": 4}"), "vae/config.json", "block_out_channels", "missing");

    [Theory]
    [InlineData("\"layers_per_block\": \"two\"", "layers_per_block", "an integer")]
    [InlineData("\"layers_per_block\": 1.5", "layers_per_block", "an integer")]
    [InlineData("\"use_linear_projection\": \"yes\"", "use_linear_projection", "true or false")]
    [InlineData("\"norm_eps\": \"small\"", "norm_eps", "a finite number")]
    [InlineData("\"attention_head_dim\": \"4\"", "attention_head_dim", "an integer or a list of integers")]
    [InlineData("\"attention_head_dim\": [4, \"8\"]", "attention_head_dim[1]", "an integer")]
    public void WrongTypeNamesTheField(string extra, string field, string expected) =>
        AssertConfigError(() => UNet(extra), "unet/config.json", field, expected);

    [Fact]
    public void WrongTypeInBlockListNamesTheElement() =>
        AssertConfigError(() => UNetConfig.Parse("""{"block_out_channels":[32,64],"down_block_types":["CrossAttnDownBlock2D",7],"up_block_types":["UpBlock2D","CrossAttnUpBlock2D"],"norm_num_groups":8}"""),
            "unet/config.json", "down_block_types[1]", "a string");

    [Fact]
    public void UnknownFieldsAreIgnored()
    {
        var c = UNet("\"some_future_option\": {\"nested\": [1, 2]}, \"_name_or_path\": \"x\", \"dropout\": 0.0");
        Assert.Equal([32, 64], c.BlockOutChannels);
        var clip = ClipTextConfig.Parse("""{"hidden_size":32,"intermediate_size":37,"num_hidden_layers":2,"num_attention_heads":4,"torch_dtype":"float32","architectures":["CLIPTextModel"]}""");
        Assert.Equal(32, clip.HiddenSize);
    }

    [Fact]
    public void UnsupportedBlockTypeNamesTheField()
    {
        var ex = AssertConfigError(() => UNetConfig.Parse("""{"block_out_channels":[32,64],"down_block_types":["CrossAttnDownBlock2D","SimpleCrossAttnDownBlock2D"],"up_block_types":["UpBlock2D","CrossAttnUpBlock2D"],"norm_num_groups":8}"""),
            "unet/config.json", "down_block_types[1]", "SimpleCrossAttnDownBlock2D");
        Assert.Contains("CrossAttnDownBlock2D", ex.Message);
        AssertConfigError(() => UNet("\"mid_block_type\": \"UNetMidBlock2DSimpleCrossAttn\""), "unet/config.json", "mid_block_type", "UNetMidBlock2DSimpleCrossAttn");
        AssertConfigError(() => VaeConfig.Parse("""{"block_out_channels":[32],"down_block_types":["AttnDownEncoderBlock2D"]}"""),
            "vae/config.json", "down_block_types[0]", "AttnDownEncoderBlock2D");
    }

    [Fact]
    public void SdxlStyleAdditionEmbeddingIsRefused() =>
        AssertConfigError(() => UNet("\"addition_embed_type\": \"text_time\""), "unet/config.json", "addition_embed_type", "text_time");

    [Fact]
    public void InvalidJsonNamesTheFile()
    {
        var ex = AssertConfigError(() => UNetConfig.Parse("{\"block_out_channels\": [32,", "a/unet/config.json"), "a/unet/config.json", null, "invalid JSON");
        Assert.Null(ex.Field);
    }

    [Fact]
    public void UnreadableFileNamesTheFile()
    {
        string missing = Path.Combine(TestPaths.Fixtures, "no-such-folder", "config.json");
        AssertConfigError(() => UNetConfig.Load(missing), missing, null, "cannot read");
    }
}

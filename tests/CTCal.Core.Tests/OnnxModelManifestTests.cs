using System.Text.Json.Nodes;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary><c>ctcal_manifest.json</c>: one record, written and read by the same code; and the family rule.</summary>
public sealed class OnnxModelManifestTests
{
    private static OnnxModelManifest Full() => new()
    {
        Name = "my model",
        Description = "fine-tuned on cubes",
        Family = ModelFamily.Sd2,
        Width = 768,
        Height = 512,
        VaeScalingFactor = 0.18215,
        PredictionType = "v_prediction",
        Method = "vanilla",
        Steps = 1200,
        SourceFolder = "/models/sd21",
        UnetWeights = new ManifestWeights("/runs/a/unet.safetensors", "ab12"),
        Loras = [new ManifestLora("/runs/a/pytorch_lora_weights.safetensors", 0.8, "cd34")],
        Exporter = "CTCal.Export 1.0.0.0",
        CreatedUtc = "2026-12-06T07:00:00.0000000Z",
        Opset = 17,
        IrVersion = 8,
        Fp16 = true,
        Optimize = "cuda",
        StepCache = new ManifestStepCache(Branch: 2, FeatureChannels: 64, FeatureDownscale: 2, FullStepGflops: 0.242786, ShallowStepGflops: 0.038461),
        Components = new JsonObject { ["unet"] = new JsonObject { ["files"] = new JsonArray("model.onnx") } },
    };

    [Fact]
    public void EveryFieldSurvivesAWriteAndARead()
    {
        var written = Full();
        var read = OnnxModelManifest.Parse(written.ToJson());
        Assert.Equal(written with { Loras = [], Components = null }, read with { Loras = [], Components = null });
        Assert.Equal(written.Loras, read.Loras);
        Assert.Equal(written.Components!.ToJsonString(), read.Components!.ToJsonString());
        Assert.Equal(OnnxModelManifest.FormatName, read.Format);
        Assert.Equal(OnnxModelManifest.CurrentFormatVersion, read.FormatVersion);
    }

    /// <summary>The step-cache record is written under camelCase keys, and a manifest without it reads as a model without the graphs.</summary>
    [Fact]
    public void TheStepCacheRecordIsWrittenAndReadAndAbsentMeansNone()
    {
        var json = JsonNode.Parse(Full().ToJson())!.AsObject();
        var cache = json["stepCache"]!.AsObject();
        Assert.Equal(2, (int?)cache["branch"]);
        Assert.Equal(64, (int?)cache["featureChannels"]);
        Assert.Equal(2, (int?)cache["featureDownscale"]);
        Assert.Equal(0.038461, (double?)cache["shallowStepGflops"]);
        Assert.Null(OnnxModelManifest.Parse("""{"family":"sd1"}""").StepCache);
        Assert.Equal("unet_shallow/model.onnx", ManifestStepCache.ShallowGraph);
    }

    /// <summary>The feature's shape: the latent halved per factor 2 of the downscale, rounding up as stride-2 convolutions do.</summary>
    [Fact]
    public void TheFeatureShapeHalvesTheLatentPerDownscaleFactorRoundingUp()
    {
        Assert.Equal([2L, 64, 9, 16], new ManifestStepCache(1, 64, 1).FeatureShape(2, 9, 16));
        Assert.Equal([1L, 32, 3, 4], new ManifestStepCache(3, 32, 4).FeatureShape(1, 9, 16)); // 9 -> 5 -> 3
    }

    [Fact]
    public void TheFileUsesCamelCaseKeysAndLeavesOutNulls()
    {
        var json = JsonNode.Parse(new OnnxModelManifest { Family = "sd1", Method = "base" }.ToJson())!.AsObject();
        Assert.Equal("sd1", (string?)json["family"]);
        Assert.Equal("base", (string?)json["method"]);
        Assert.Equal(2, (int?)json["formatVersion"]);
        Assert.False(json.ContainsKey("width"));
        Assert.False(json.ContainsKey("unetWeights"));
    }

    /// <summary>What the exporter wrote before this record (format version 1): read, with the serving fields absent.</summary>
    [Fact]
    public void AVersionOneManifestIsReadWithoutTheServingFields()
    {
        var read = OnnxModelManifest.Parse("""
            {"format":"ctcal-onnx","formatVersion":1,"exporter":"CTCal.Export 1.0.0.0","createdUtc":"2026-11-01T00:00:00Z",
             "sourceFolder":"/m","unetWeights":null,"loras":[],"method":null,"steps":null,"opset":17,"irVersion":8,"fp16":false,
             "components":{"unet":{"files":["model.onnx"]}}}
            """);
        Assert.Equal(1, read.FormatVersion);
        Assert.Null(read.Family);
        Assert.Null(read.Width);
        Assert.Null(read.Method);
        Assert.Equal(17, read.Opset);
        Assert.Null(read.Optimize);
        Assert.Equal("plain", read.OptimizeOrPlain); // every export before the field was plain
        Assert.DoesNotContain("optimizeOrPlain", read.ToJson());
    }

    [Theory]
    [InlineData("""{"family":"sdxl"}""", "family must be one of sd1, sd2, sd3, got 'sdxl'")]
    [InlineData("""{"vaeShiftFactor":"NaN"}""", "not a valid manifest")]
    [InlineData("""{"method":"gors"}""", "method must be one of base, vanilla, ctcal, got 'gors'")]
    [InlineData("""{"width":100}""", "width must be a positive multiple of 8, got 100")]
    [InlineData("""{"height":-8}""", "height must be a positive multiple of 8, got -8")]
    [InlineData("""{"vaeScalingFactor":0}""", "vaeScalingFactor must be a positive number")]
    [InlineData("""{"format":"other"}""", "format must be 'ctcal-onnx'")]
    [InlineData("""{"optimize":"tensorrt"}""", "optimize must be one of plain, cpu, cuda, directml, got 'tensorrt'")]
    [InlineData("""{"precision":"int8","fp16":true}""", "precision must be one of fp32, fp16-weights, fp16, got 'int8'")]
    [InlineData("""{"precision":"fp16"}""", "precision 'fp16' stores float16 weights, but fp16 is false")]
    [InlineData("""{"precision":"fp32","fp16":true}""", "precision 'fp32' stores float32 weights, but fp16 is true")]
    [InlineData("""{"width":"wide"}""", "not a valid manifest")]
    [InlineData("""{"loras":[{"path":"a","scale":"x","sha256":"b"}]}""", "not a valid manifest")]
    [InlineData("""{"stepCache":{"branch":0,"featureChannels":32,"featureDownscale":1}}""", "stepCache.branch must be >= 1, got 0")]
    [InlineData("""{"stepCache":{"branch":1,"featureChannels":32,"featureDownscale":3}}""", "stepCache.featureDownscale must be a power of 2, got 3")]
    [InlineData("""{"stepCache":{"branch":1,"featureChannels":0,"featureDownscale":1}}""", "stepCache.featureChannels must be >= 1, got 0")]
    [InlineData("""{"stepCache":{"branch":1,"featureChannels":32,"featureDownscale":1,"shallowStepGflops":-1}}""", "stepCache.shallowStepGflops must be a number >= 0, got -1")]
    [InlineData("""{"family":"sd3","stepCache":{"branch":1,"featureChannels":32,"featureDownscale":1}}""", "stepCache is for UNet models")]
    [InlineData("null", "empty manifest")]
    [InlineData("{", "not a valid manifest")]
    public void ABrokenManifestIsRefusedNamingTheFileAndField(string json, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => OnnxModelManifest.Parse(json, "/models/m/ctcal_manifest.json"));
        Assert.StartsWith("/models/m/ctcal_manifest.json: ", e.Message);
        Assert.Contains(message, e.Message);
    }

    /// <summary>An SD3 export: family sd3, the VAE's shift next to its scaling factor, no prediction type (flow matching).</summary>
    [Fact]
    public void AnSD3ManifestKeepsTheVaeShiftFactor()
    {
        var written = new OnnxModelManifest { Family = ModelFamily.Sd3, Width = 1024, Height = 1024, VaeScalingFactor = 1.5305, VaeShiftFactor = 0.0609, Method = "base" };
        var json = JsonNode.Parse(written.ToJson())!.AsObject();
        Assert.Equal("sd3", (string?)json["family"]);
        Assert.Equal(0.0609, (double?)json["vaeShiftFactor"]);
        Assert.False(json.ContainsKey("predictionType"));
        var read = OnnxModelManifest.Parse(written.ToJson());
        Assert.Equal(written with { Loras = [] }, read with { Loras = [] });
        Assert.Null(OnnxModelManifest.Parse(new OnnxModelManifest { Family = "sd1" }.ToJson()).VaeShiftFactor);
        Assert.Throws<InvalidDataException>(() => new OnnxModelManifest { VaeShiftFactor = double.PositiveInfinity }.ToJson());
    }

    [Fact]
    public void AWriterCannotWriteAnInvalidManifest() =>
        Assert.Throws<InvalidDataException>(() => new OnnxModelManifest { Method = "magic" }.ToJson());

    [Fact]
    public void TryReadReturnsNullForAFolderWithoutAManifest()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"ctcal-manifest-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            Assert.Null(OnnxModelManifest.TryRead(folder));
            Full().Write(folder);
            Assert.Equal("my model", OnnxModelManifest.TryRead(folder)!.Name);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static UNetConfig Unet(bool linear) => UNetConfig.Parse($$"""
        { "block_out_channels": [8, 16], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
          "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "norm_num_groups": 4, "cross_attention_dim": 48,
          "use_linear_projection": {{(linear ? "true" : "false")}} }
        """);

    private static ClipTextConfig Text(string act) => ClipTextConfig.Parse($$"""
        { "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 100,
          "max_position_embeddings": 77, "hidden_act": "{{act}}" }
        """);

    /// <summary>The family comes from the architecture; a hidden size of 48 says nothing (it was once read as "not 1024, so SD1").</summary>
    [Theory]
    [InlineData(false, "quick_gelu", "sd1")]
    [InlineData(true, "gelu", "sd2")]
    [InlineData(true, "quick_gelu", "sd2")]
    [InlineData(false, "gelu", "sd2")]
    public void FamilyFollowsTheArchitectureNotTheWidth(bool linear, string act, string family)
    {
        Assert.Equal(family, ModelFamily.Detect(Unet(linear), Text(act)));
        Assert.Equal(linear ? "sd2" : "sd1", ModelFamily.Detect(Unet(linear), null));
        Assert.Equal(act == "gelu" ? "sd2" : "sd1", ModelFamily.Detect(null, Text(act)));
        Assert.Null(ModelFamily.Detect(null, null));
    }
}

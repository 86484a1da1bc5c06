using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>The three full-size configurations carry the published values (spot checks of what shapes the networks).</summary>
public sealed class ReferenceModelsTests
{
    [Fact]
    public void Sd15_has_the_published_configs()
    {
        var m = ReferenceModels.Sd15;
        var unet = m.Unet;
        Assert.Equal([320, 640, 1280, 1280], unet.BlockOutChannels);
        Assert.Equal(2, unet.LayersPerBlock);
        Assert.Equal(768, unet.CrossAttentionDim);
        Assert.Equal([8, 8, 8, 8], unet.NumAttentionHeads);
        Assert.False(unet.UseLinearProjection);
        Assert.False(unet.UpcastAttention);
        Assert.Equal(64, unet.SampleSize);
        Assert.Equal(["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"], unet.DownBlockTypes);
        Assert.Equal(["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], unet.UpBlockTypes);

        var text = m.TextEncoder;
        Assert.Equal((768, 12, 12, 3072, "quick_gelu", 49408, 77), (text.HiddenSize, text.NumHiddenLayers, text.NumAttentionHeads, text.IntermediateSize, text.HiddenAct, text.VocabSize, text.MaxPositionEmbeddings));
        Assert.Equal(2, text.EosTokenId); // the legacy config: pooling at argmax(input_ids)

        AssertSdVae(m.Vae);
        var scheduler = m.Scheduler;
        Assert.Equal(("PNDMScheduler", "epsilon", "scaled_linear", 0.00085, 0.012, 1), (scheduler.ClassName, scheduler.PredictionType, scheduler.BetaSchedule, scheduler.BetaStart, scheduler.BetaEnd, scheduler.StepsOffset));
        Assert.Equal("StableDiffusionPipeline", m.Index.ClassName);
        Assert.Equal(ModelFamily.Sd1, ModelFamily.Detect(unet, text));
        Assert.Contains("\"pad_token\": \"<|endoftext|>\"", m.SpecialTokensMapJson, StringComparison.Ordinal);
    }

    [Fact]
    public void Sd21_is_the_768_v_model()
    {
        var m = ReferenceModels.Sd21;
        AssertSd2Networks(m);
        Assert.Equal(96, m.Unet.SampleSize);
        Assert.True(m.Unet.UpcastAttention);
        Assert.Equal(("DDIMScheduler", "v_prediction"), (m.Scheduler.ClassName, m.Scheduler.PredictionType));
    }

    [Fact]
    public void Sd21_base_is_the_512_epsilon_model()
    {
        var m = ReferenceModels.Sd21Base;
        AssertSd2Networks(m);
        Assert.Equal(64, m.Unet.SampleSize);
        Assert.False(m.Unet.UpcastAttention);
        Assert.Equal(("PNDMScheduler", "epsilon"), (m.Scheduler.ClassName, m.Scheduler.PredictionType));
    }

    [Fact]
    public void Get_finds_each_kind_and_names_the_known_ones_otherwise()
    {
        Assert.Same(ReferenceModels.Sd15, ReferenceModels.Get("sd15"));
        Assert.Same(ReferenceModels.Sd21, ReferenceModels.Get("SD21"));
        Assert.Same(ReferenceModels.Sd21Base, ReferenceModels.Get("sd21-base"));
        var e = Assert.Throws<ArgumentException>(() => ReferenceModels.Get("sdxl"));
        Assert.Contains("sd15, sd21, sd21-base", e.Message, StringComparison.Ordinal);
    }

    private static void AssertSd2Networks(ReferenceModel m)
    {
        var unet = m.Unet;
        Assert.Equal([320, 640, 1280, 1280], unet.BlockOutChannels);
        Assert.Equal(1024, unet.CrossAttentionDim);
        Assert.Equal([5, 10, 20, 20], unet.NumAttentionHeads);
        Assert.True(unet.UseLinearProjection);
        var text = m.TextEncoder;
        Assert.Equal((1024, 23, 16, 4096, "gelu", 49408), (text.HiddenSize, text.NumHiddenLayers, text.NumAttentionHeads, text.IntermediateSize, text.HiddenAct, text.VocabSize));
        AssertSdVae(m.Vae);
        Assert.Equal(ModelFamily.Sd2, ModelFamily.Detect(unet, text));
        Assert.Contains("\"pad_token\": \"!\"", m.SpecialTokensMapJson, StringComparison.Ordinal); // OpenCLIP pads with id 0
        Assert.Equal("StableDiffusionPipeline", m.Index.ClassName);
    }

    private static void AssertSdVae(VaeConfig vae)
    {
        Assert.Equal([128, 256, 512, 512], vae.BlockOutChannels);
        Assert.Equal(2, vae.LayersPerBlock);
        Assert.Equal(4, vae.LatentChannels);
        Assert.Equal(0.18215, vae.ScalingFactor);
        Assert.Equal(8, vae.DownscaleFactor);
    }
}

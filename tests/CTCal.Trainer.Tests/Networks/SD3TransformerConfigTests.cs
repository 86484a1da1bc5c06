using Xunit;
using CTCal.Core.Diffusers;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>SD3TransformerConfig: the fixture's and the published SD3-medium config, defaults, and refusals naming file and key.</summary>
public sealed class SD3TransformerConfigTests
{
    private const string File = "sd3/transformer/config.json";

    // stabilityai/stable-diffusion-3-medium-diffusers, transformer/config.json (the benchmarks' copy, one place).
    private const string Sd3Medium = ReferenceModels.Sd3MediumTransformerConfigJson;

    private static string With(string json, string field, string value)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node[field] = value == "<remove>" ? null : System.Text.Json.Nodes.JsonNode.Parse(value);
        if (value == "<remove>") node.Remove(field);
        return node.ToJsonString();
    }

    private static void AssertRefused(string json, string field, string part)
    {
        var e = Assert.Throws<DiffusersConfigException>(() => SD3TransformerConfig.Parse(json, File));
        Assert.Equal(File, e.File);
        Assert.Equal(field, e.Field);
        Assert.Contains($"field '{field}'", e.Message);
        Assert.Contains(File, e.Message);
        Assert.Contains(part, e.Message);
    }

    [Fact]
    public void TheFixtureConfigLoads()
    {
        string path = Path.Combine(SD3TransformerParityTests.TinySd3, "transformer", "config.json");
        var c = SD3TransformerConfig.Load(path);
        Assert.Equal(path, c.File);
        Assert.Equal((16, 2, 4, 4, 2, 8, 4, 32, 32, 16, 32), (c.SampleSize, c.PatchSize, c.InChannels, c.OutChannels, c.NumLayers,
            c.AttentionHeadDim, c.NumAttentionHeads, c.JointAttentionDim, c.CaptionProjectionDim, c.PooledProjectionDim, c.PosEmbedMaxSize));
        Assert.Equal(32, c.InnerDim);
    }

    [Fact]
    public void ThePublishedSd3MediumConfigLoads()
    {
        var c = SD3TransformerConfig.Parse(Sd3Medium, File);
        Assert.Equal((128, 2, 16, 16, 24, 64, 24, 4096, 1536, 2048, 192), (c.SampleSize, c.PatchSize, c.InChannels, c.OutChannels, c.NumLayers,
            c.AttentionHeadDim, c.NumAttentionHeads, c.JointAttentionDim, c.CaptionProjectionDim, c.PooledProjectionDim, c.PosEmbedMaxSize));
        Assert.Equal(1536, c.InnerDim);
    }

    [Fact]
    public void AbsentFieldsTakeDiffusersDefaultsAndUnknownOnesAreIgnored()
    {
        var c = SD3TransformerConfig.Parse("""{ "caption_projection_dim": 1152, "some_future_field": [1, 2], "out_channels": null }""", File);
        Assert.Equal((128, 2, 16, 16, 18, 64, 18, 4096, 2048, 96), (c.SampleSize, c.PatchSize, c.InChannels, c.OutChannels, c.NumLayers,
            c.AttentionHeadDim, c.NumAttentionHeads, c.JointAttentionDim, c.PooledProjectionDim, c.PosEmbedMaxSize));
        // out_channels absent or null: diffusers uses in_channels.
        Assert.Equal(8, SD3TransformerConfig.Parse(With(With(Sd3Medium, "out_channels", "<remove>"), "in_channels", "8"), File).OutChannels);
    }

    [Fact]
    public void Sd35FeaturesAreRefusedByNameWhenTheyAskForSomething()
    {
        AssertRefused(With(Sd3Medium, "qk_norm", "\"rms_norm\""), "qk_norm", "'rms_norm'");
        AssertRefused(With(Sd3Medium, "dual_attention_layers", "[0, 1, 2]"), "dual_attention_layers", "SD3.5");
        AssertRefused(With(Sd3Medium, "dual_attention_layers", "3"), "dual_attention_layers", "list");
        // Written as "off" by later diffusers for SD3 medium: accepted.
        var c = SD3TransformerConfig.Parse(With(With(Sd3Medium, "qk_norm", "null"), "dual_attention_layers", "[]"), File);
        Assert.Equal(24, c.NumLayers);
    }

    [Fact]
    public void InvalidValuesAreRefusedNamingTheField()
    {
        AssertRefused(With(Sd3Medium, "_class_name", "\"UNet2DConditionModel\""), "_class_name", "SD3Transformer2DModel");
        AssertRefused(With(Sd3Medium, "patch_size", "\"2\""), "patch_size", "expected an integer");
        AssertRefused(With(Sd3Medium, "num_layers", "0"), "num_layers", "must be positive");
        AssertRefused(With(Sd3Medium, "attention_head_dim", "-64"), "attention_head_dim", "must be positive");
        AssertRefused(With(Sd3Medium, "num_attention_heads", "1.5"), "num_attention_heads", "expected an integer");
        AssertRefused(With(Sd3Medium, "sample_size", "127"), "sample_size", "multiple of patch_size");
        AssertRefused(With(Sd3Medium, "pos_embed_max_size", "32"), "pos_embed_max_size", "smaller than");
        AssertRefused(With(Sd3Medium, "pos_embed_max_size", "null"), "pos_embed_max_size", "null");
        AssertRefused(With(Sd3Medium, "caption_projection_dim", "1152"), "caption_projection_dim", "1536");
        AssertRefused(With(With(Sd3Medium, "attention_head_dim", "3"), "num_attention_heads", "2"), "attention_head_dim", "multiple of 4");
        var e = Assert.Throws<DiffusersConfigException>(() => SD3TransformerConfig.Parse("[1]", File));
        Assert.Null(e.Field);
        Assert.Contains(File, e.Message);
    }
}

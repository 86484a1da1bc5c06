using Xunit;
using CTCal.Core.Diffusers;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>Configs beyond the fixtures: more levels, stacked transformer layers, odd latent sizes, reduced precision.</summary>
public sealed class ModelVariantsTests
{
    private static UNetConfig FourLevels() => UNetConfig.Parse("""
    {
      "block_out_channels": [8, 16, 16, 32],
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "layers_per_block": 1,
      "num_attention_heads": [1, 2, 2, 4],
      "attention_head_dim": 64,
      "transformer_layers_per_block": [1, 2, 2, 3],
      "cross_attention_dim": 12,
      "norm_num_groups": 4,
      "sample_size": 16
    }
    """, "four-levels/unet/config.json");

    [Fact]
    public void StackedTransformerLayersAndFourLevelsAreNamedAndCaptured()
    {
        using var scope = NewDisposeScope();
        using var unet = new UNet2DConditionModel(FourLevels());
        var keys = unet.state_dict().Keys.ToHashSet();
        Assert.Contains("down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight", keys);
        Assert.DoesNotContain("down_blocks.0.attentions.0.transformer_blocks.1.attn2.to_k.weight", keys);
        Assert.Contains("mid_block.attentions.0.transformer_blocks.2.attn2.to_q.weight", keys);   // mid uses the last entry (3)
        Assert.Contains("up_blocks.1.attentions.1.transformer_blocks.1.ff.net.2.weight", keys);   // up 1 mirrors down 2 (2 layers)
        Assert.Contains("up_blocks.3.attentions.1.transformer_blocks.0.norm1.weight", keys);
        Assert.DoesNotContain("up_blocks.3.attentions.1.transformer_blocks.1.norm1.weight", keys);
        Assert.Contains("mid_block.attentions.0.proj_in.weight", keys);
        Assert.Equal(4, unet.state_dict()["mid_block.attentions.0.proj_in.weight"].dim()); // conv 1x1 without use_linear_projection

        // heads come from num_attention_heads (attention_head_dim is then the head width and ignored here)
        Assert.Contains(new CrossAttentionLayer("mid_block.attentions.0.transformer_blocks.2.attn2", 8, 4), unet.CrossAttentionPaths);
        Assert.Equal(1 * 1 + 1 * 2 + 1 * 2 + 3 + 2 * 2 * 2 + 2 * 1, unet.CrossAttentionPaths.Count);

        // An odd latent (10 -> 5 -> 3 -> 2) needs the explicit upsample sizes.
        using var capture = AttentionCapture.AtDownscale(unet, 2);
        using var _ = no_grad();
        var output = unet.forward(randn(1, 4, 10, 10), tensor(7.5f), randn(1, 3, 12), capture);
        Assert.Equal(new long[] { 1, 4, 10, 10 }, output.shape);
        Assert.All(capture.Maps.Values, m => Assert.Equal(25, m.shape[2]));
        Assert.Equal(2 + 2 * 2, capture.Maps.Count); // down_blocks.1 (2 layers) + up_blocks.2 (2 attentions x 2 layers)
    }

    [Fact]
    public void UnsupportedConfigsAreRefusedByField()
    {
        var e = Assert.Throws<DiffusersConfigException>(() => UNetConfig.Parse("""
        { "block_out_channels": [8], "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"], "norm_num_groups": 4,
          "addition_embed_type": "text_time" }
        """));
        Assert.Contains("addition_embed_type", e.Message);
    }

    [Fact]
    public void FrozenPartsRunInBFloat16CloseToFp32()
    {
        using var scope = NewDisposeScope();
        string folder = ModelTestConfigs.TinySd1;
        var io = FixtureTensors.Read(Path.Combine(folder, "text_encoder_io.safetensors"));
        using var clip = new CLIPTextModel(ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json")));
        DiffusersWeights.Load(clip, Path.Combine(folder, "text_encoder"));
        PretrainedModels.Freeze(clip).to(ScalarType.BFloat16);
        using var vae = new AutoencoderKL(VaeConfig.Load(Path.Combine(folder, "vae", "config.json")));
        DiffusersWeights.Load(vae, Path.Combine(folder, "vae"));
        PretrainedModels.Freeze(vae).to(ScalarType.BFloat16);
        var vio = FixtureTensors.Read(Path.Combine(folder, "vae_io.safetensors"));
        using var _ = no_grad();

        var (last, _) = clip.forward(io["input_ids"]);
        Assert.Equal(ScalarType.BFloat16, last.dtype);
        double textErr = FixtureTensors.MaxAbsDiff(last, io["last_hidden_state"]);
        var decoded = vae.Decode(vio["latents"].to(ScalarType.BFloat16));
        double vaeErr = FixtureTensors.MaxAbsDiff(decoded, vio["decoded"]);
        var (mean, _) = vae.Encode(vio["image"].to(ScalarType.BFloat16));
        double meanErr = FixtureTensors.MaxAbsDiff(mean, vio["latent_mean"]);
        // bf16 keeps ~3 significant digits: close, but not the fp32 1e-4 agreement. Measured on tiny-sd1 (outputs up to
        // 2.0 / 0.58 / 0.65): 0.018 / 0.014 / 0.0038. The bounds are about 1.5x that, below the ~1e-2 a wrong attention
        // layout or time embedding moves these outputs by.
        Assert.True(textErr < 0.03, $"text encoder bf16 error {textErr}");
        Assert.True(vaeErr < 0.02, $"VAE decode bf16 error {vaeErr}");
        Assert.True(meanErr < 0.006, $"VAE encode bf16 error {meanErr}");
    }

    [Fact]
    public void UpcastAttentionCapturesFp32MapsFromBFloat16Layers()
    {
        using var scope = NewDisposeScope();
        // Weights and inputs from a private generator: torch's global one is shared with the tests running beside this one.
        using var generator = new Generator(9);
        using var unet = new UNet2DConditionModel(ModelTestConfigs.Sd2Style());
        CTCal.Trainer.Training.DeterministicInit.Reset(unet, generator);
        var sample = randn([1, 4, 8, 8], generator: generator);
        var context = randn([1, 5, 24], generator: generator);
        using var _ = no_grad();
        using var reference = AttentionCapture.AtDownscale(unet, 1);
        unet.forward(sample, tensor(3L), context, reference);
        unet.to(ScalarType.BFloat16);
        using var capture = AttentionCapture.AtDownscale(unet, 1);
        var output = unet.forward(sample.to(ScalarType.BFloat16), tensor(3L), context.to(ScalarType.BFloat16), capture);
        Assert.Equal(ScalarType.BFloat16, output.dtype);
        foreach (var (path, map) in capture.Maps)
        {
            Assert.Equal(ScalarType.Float32, map.dtype); // upcast_attention: scores and softmax in fp32
            // Measured 0.0023-0.0043 with these weights (bf16 projections, fp32 softmax); the same each run.
            double error = FixtureTensors.MaxAbsDiff(map, reference.Maps[path]);
            Assert.True(error < 0.01, $"{path}: bf16 map differs from fp32 by {error}");
        }
    }
}

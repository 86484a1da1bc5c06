using Xunit;
using CTCal.Core.Diffusers;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>
/// The SD2-style models against the diffusers / transformers outputs recorded in tests/data/fixtures/tiny-sd2-style:
/// a UNet with linear proj_in/proj_out, per-block head counts (2, 4), upcast_attention and flip_sin_to_cos; a gelu CLIP
/// text encoder fed SD2's zero-padded ids; an AutoencoderKL with 8 norm groups.
/// </summary>
public sealed class Sd2StyleParityTests(ITestOutputHelper output)
{
    private static string Folder => ModelTestConfigs.TinySd2Style;

    [Theory]
    [InlineData(1)]
    [InlineData(999)]
    public void UNetOutputAndEveryRecordedCrossAttentionMapMatchDiffusers(long t)
    {
        using var scope = NewDisposeScope();
        var config = UNetConfig.Load(Path.Combine(Folder, "unet", "config.json"));
        Assert.True(config.UseLinearProjection);
        Assert.True(config.UpcastAttention);
        using var unet = new UNet2DConditionModel(config);
        ModelTestConfigs.LoadWeights(unet, Path.Combine(Folder, "unet"));
        var io = FixtureTensors.Read(Path.Combine(Folder, "unet_io.safetensors"));
        string prefix = $"attn_probs_t{t}/";
        var recorded = io.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        Assert.Equal(7, recorded.Count);

        using var capture = new AttentionCapture(recorded.Select(k => k[prefix.Length..]));
        using var _ = no_grad();
        var prediction = unet.forward(io["sample"], tensor(t), io["encoder_hidden_states"], capture);

        double outErr = FixtureTensors.MaxAbsDiff(prediction, io[$"out_sample_t{t}"]);
        output.WriteLine($"out_sample_t{t}: max abs error {outErr:E2}");
        Assert.True(outErr <= 1e-4, $"out_sample_t{t}: max abs error {outErr}");
        foreach (string key in recorded)
        {
            string path = key[prefix.Length..^".processor".Length];
            var map = capture.Maps[path];                                   // [B, heads, HW, 77]
            var reference = io[key];                                        // [B*heads, HW, 77], batch-major then heads
            // diffusers' per-block attention_head_dim (2, 4) is the head count: 2 heads at 32 channels, 4 at 48 (mid, up_blocks.0).
            long heads = path.StartsWith("down_blocks.0", StringComparison.Ordinal) || path.StartsWith("up_blocks.1", StringComparison.Ordinal) ? 2 : 4;
            Assert.Equal(heads, map.shape[1]);
            var flat = map.reshape(map.shape[0] * map.shape[1], map.shape[2], map.shape[3]);
            double err = FixtureTensors.MaxAbsDiff(flat, reference);
            output.WriteLine($"{path}: max abs error {err:E2}");
            Assert.True(err <= 1e-5, $"{path}: max abs error {err}");
        }
    }

    [Fact]
    public void TheUNetFixtureSeparatesTimestepsAndHeadLayouts()
    {
        // Guards the tolerances: t=1 and t=999 differ far beyond 1e-4, and the maps of the two heads of a layer differ
        // far beyond 1e-5, so a wrong time embedding or a head-order mix-up fails the parity test.
        using var scope = NewDisposeScope();
        var io = FixtureTensors.Read(Path.Combine(Folder, "unet_io.safetensors"));
        Assert.True(FixtureTensors.MaxAbsDiff(io["out_sample_t1"], io["out_sample_t999"]) > 1e-2);
        var map = io["attn_probs_t1/down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor"]; // [2*2, 256, 77]
        Assert.True(FixtureTensors.MaxAbsDiff(map[0], map[1]) > 1e-3);
    }

    [Fact]
    public void GeluClipMatchesTheReferenceOnZeroPaddedIds()
    {
        using var scope = NewDisposeScope();
        var config = ClipTextConfig.Load(Path.Combine(Folder, "text_encoder", "config.json"));
        Assert.Equal("gelu", config.HiddenAct);
        using var clip = new CLIPTextModel(config);
        ModelTestConfigs.LoadWeights(clip, Path.Combine(Folder, "text_encoder"));
        var io = FixtureTensors.Read(Path.Combine(Folder, "text_encoder_io.safetensors"));
        var ids = io["input_ids"];
        Assert.Equal(0L, ids[0, 76].item<long>()); // SD2 / OpenCLIP padding after the end-of-text token
        using var _ = no_grad();
        var (last, pooled) = clip.forward(ids);
        double e1 = FixtureTensors.MaxAbsDiff(last, io["last_hidden_state"]);
        double e2 = FixtureTensors.MaxAbsDiff(pooled, io["pooled_output"]);
        output.WriteLine($"last_hidden_state {e1:E2}, pooled_output {e2:E2}");
        Assert.True(e1 <= 1e-4, $"last_hidden_state: max abs error {e1}");
        Assert.True(e2 <= 1e-4, $"pooled_output: max abs error {e2}");
    }

    [Fact]
    public void VaeMatchesTheReferenceMomentsAndDecoding()
    {
        using var scope = NewDisposeScope();
        using var vae = new AutoencoderKL(VaeConfig.Load(Path.Combine(Folder, "vae", "config.json")));
        ModelTestConfigs.LoadWeights(vae, Path.Combine(Folder, "vae"));
        var io = FixtureTensors.Read(Path.Combine(Folder, "vae_io.safetensors"));
        using var _ = no_grad();
        var (mean, logvar) = vae.Encode(io["image"]);
        double e1 = FixtureTensors.MaxAbsDiff(mean, io["latent_mean"]);
        double e2 = FixtureTensors.MaxAbsDiff(logvar, io["latent_logvar"]);
        double e3 = FixtureTensors.MaxAbsDiff(vae.Decode(io["latents"]), io["decoded"]);
        output.WriteLine($"latent_mean {e1:E2}, latent_logvar {e2:E2}, decoded {e3:E2}");
        Assert.True(e1 <= 1e-4, $"latent_mean: max abs error {e1}");
        Assert.True(e2 <= 1e-4, $"latent_logvar: max abs error {e2}");
        Assert.True(e3 <= 1e-4, $"decoded: max abs error {e3}");
    }
}

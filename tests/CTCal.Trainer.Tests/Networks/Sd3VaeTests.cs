using CTCal.Core.Diffusers;
using CTCal.Trainer.Networks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

public sealed class Sd3VaeTests
{
    /// <summary>SD3's VAE config shape (16 latent channels, shift and scale, no quant convs) at tiny widths.</summary>
    private static VaeConfig TinySd3Vae() => VaeConfig.Parse("""
    {
      "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [8, 16],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
      "in_channels": 3, "out_channels": 3, "latent_channels": 16, "latents_mean": null, "latents_std": null,
      "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 16, "force_upcast": true,
      "scaling_factor": 1.5305, "shift_factor": 0.0609, "use_quant_conv": false, "use_post_quant_conv": false
    }
    """, "tiny-sd3/vae/config.json");

    [Fact]
    public void Sd3VaeHasSixteenChannelsNoQuantConvsAndShiftsBeforeScaling()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        using var vae = new AutoencoderKL(TinySd3Vae());
        Assert.DoesNotContain(vae.state_dict().Keys, k => k.Contains("quant_conv", StringComparison.Ordinal));
        Assert.Equal(new long[] { 32, 16, 3, 3 }, vae.state_dict()["encoder.conv_out.weight"].shape); // 2 * 16 moments
        Assert.Equal(new long[] { 16, 16, 3, 3 }, vae.state_dict()["decoder.conv_in.weight"].shape);
        using var _ = no_grad();
        var image = rand(1, 3, 16, 16).mul(2).sub(1);
        var (mean, logvar) = vae.Encode(image);
        Assert.Equal(new long[] { 1, 16, 8, 8 }, mean.shape);
        Assert.Equal(new long[] { 1, 16, 8, 8 }, logvar.shape);
        Assert.Equal(new long[] { 1, 3, 16, 16 }, vae.Decode(mean).shape);

        var scaled = vae.ScaleLatents(mean);
        Assert.True(FixtureTensors.MaxAbsDiff(scaled, mean.sub(0.0609).mul(1.5305)) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(vae.UnscaleLatents(scaled), mean) < 1e-6);
        Assert.True(FixtureTensors.MaxAbsDiff(vae.UnscaleLatents(mean), mean.div(1.5305).add(0.0609)) == 0);
    }

    [Fact]
    public void Sd1VaeKeepsItsQuantConvsAndPlainScaling()
    {
        using var scope = NewDisposeScope();
        var config = VaeConfig.Load(Path.Combine(ModelTestConfigs.TinySd1, "vae", "config.json"));
        Assert.Equal(0.0, config.ShiftFactor);
        Assert.True(config.UseQuantConv);
        Assert.True(config.UsePostQuantConv);
        using var vae = new AutoencoderKL(config);
        Assert.Contains("quant_conv.weight", vae.state_dict().Keys);
        Assert.Contains("post_quant_conv.weight", vae.state_dict().Keys);
        var z = randn(1, 4, 4, 4);
        Assert.True(FixtureTensors.MaxAbsDiff(vae.ScaleLatents(z), z.mul(0.18215)) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(vae.UnscaleLatents(z), z.div(0.18215)) == 0);
    }
}

using Xunit;
using CTCal.Core.Diffusers;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

public sealed class TextEncoderAndVaeTests
{
    [Fact]
    public void TinyClipMatchesTheReferenceHiddenStatesAndPooledOutput()
    {
        using var scope = NewDisposeScope();
        string folder = ModelTestConfigs.TinySd1;
        var config = ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json"));
        Assert.True(config.LegacyArgmaxPooling);
        using var clip = new CLIPTextModel(config);
        ModelTestConfigs.LoadWeights(clip, Path.Combine(folder, "text_encoder"));
        var io = FixtureTensors.Read(Path.Combine(folder, "text_encoder_io.safetensors"));
        using var _ = no_grad();
        var (last, pooled) = clip.forward(io["input_ids"]);
        Assert.True(FixtureTensors.MaxAbsDiff(last, io["last_hidden_state"]) <= 1e-4, "last_hidden_state");
        Assert.True(FixtureTensors.MaxAbsDiff(pooled, io["pooled_output"]) <= 1e-4, "pooled_output");
    }

    [Fact]
    public void GeluClipPoolsAtTheFirstEosAndIsCausal()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var config = ModelTestConfigs.GeluClip();
        Assert.False(config.LegacyArgmaxPooling);
        using var clip = new CLIPTextModel(config);
        Assert.Contains("text_model.encoder.layers.1.mlp.fc1.weight", clip.state_dict().Keys);
        // SD2 pads with 0 after the first eos (99); the first row also has a larger id (98 = bos) before eos.
        var ids = tensor(new long[,] { { 98, 5, 7, 99, 0, 0 }, { 98, 12, 99, 0, 0, 0 } });
        using var _ = no_grad();
        var (last, pooled) = clip.forward(ids);
        Assert.Equal(new long[] { 2, 6, 16 }, last.shape);
        Assert.True(FixtureTensors.MaxAbsDiff(pooled[0], last[0, 3]) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(pooled[1], last[1, 2]) == 0);
        // Causal: changing a later token leaves earlier positions untouched.
        var changed = ids.clone();
        changed[0, 4] = tensor(33L);
        var (last2, _) = clip.forward(changed);
        Assert.True(FixtureTensors.MaxAbsDiff(last2[0, ..4], last[0, ..4]) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(last2[0, 4], last[0, 4]) > 1e-4);
    }

    [Fact]
    public void TinyVaeMatchesTheReferenceMomentsAndDecoding()
    {
        using var scope = NewDisposeScope();
        string folder = ModelTestConfigs.TinySd1;
        using var vae = new AutoencoderKL(VaeConfig.Load(Path.Combine(folder, "vae", "config.json")));
        ModelTestConfigs.LoadWeights(vae, Path.Combine(folder, "vae"));
        var io = FixtureTensors.Read(Path.Combine(folder, "vae_io.safetensors"));
        using var _ = no_grad();
        var (mean, logvar) = vae.Encode(io["image"]);
        Assert.True(FixtureTensors.MaxAbsDiff(mean, io["latent_mean"]) <= 1e-4, "latent_mean");
        Assert.True(FixtureTensors.MaxAbsDiff(logvar, io["latent_logvar"]) <= 1e-4, "latent_logvar");
        var decoded = vae.Decode(io["latents"]);
        Assert.True(FixtureTensors.MaxAbsDiff(decoded, io["decoded"]) <= 1e-4, "decoded");
        Assert.Equal(0.18215, vae.ScalingFactor);
    }

    [Fact]
    public void VaeSamplingFollowsTheGenerator()
    {
        using var scope = NewDisposeScope();
        var mean = zeros(1, 4, 8, 8);
        var logvar = full(new long[] { 1, 4, 8, 8 }, Math.Log(4.0));
        using var g1 = new Generator(42);
        using var g2 = new Generator(42);
        var a = AutoencoderKL.Sample(mean, logvar, g1);
        var b = AutoencoderKL.Sample(mean, logvar, g2);
        Assert.True(FixtureTensors.MaxAbsDiff(a, b) == 0);
        using var g3 = new Generator(42);
        var noise = randn(new long[] { 1, 4, 8, 8 }, generator: g3);
        Assert.True(FixtureTensors.MaxAbsDiff(a, noise.mul(2)) < 1e-6); // std = exp(log 4 / 2) = 2
        Assert.True(AutoencoderKL.Sample(mean, logvar, g1).sub(a).abs().max().item<float>() > 0); // the generator advanced
    }
}

using Xunit;
using CTCal.Core.Diffusers;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>The tiny SD1 UNet against diffusers 0.27.2's outputs and cross-attention probabilities.</summary>
public sealed class UNetParityTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(999)]
    public void OutputAndEveryRecordedCrossAttentionMapMatchDiffusers(long t)
    {
        using var scope = NewDisposeScope();
        string folder = ModelTestConfigs.TinySd1;
        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(folder, "unet", "config.json")));
        ModelTestConfigs.LoadWeights(unet, Path.Combine(folder, "unet"));
        var io = FixtureTensors.Read(Path.Combine(folder, "unet_io.safetensors"));
        string prefix = $"attn_probs_t{t}/";
        var recorded = io.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        Assert.Equal(4, recorded.Count);

        using var capture = new AttentionCapture(recorded.Select(k => k[prefix.Length..]));
        using var _ = no_grad();
        var output = unet.forward(io["sample"], tensor(t), io["encoder_hidden_states"], capture);

        Assert.True(FixtureTensors.MaxAbsDiff(output, io[$"out_sample_t{t}"]) <= 1e-4, $"out_sample_t{t}");
        foreach (string key in recorded)
        {
            string path = key[prefix.Length..^".processor".Length];
            var map = capture.Maps[path];                                   // [B, heads, HW, 77]
            var reference = io[key];                                        // [B*heads, HW, 77], batch-major then heads
            Assert.Equal(4, map.shape[1]);
            var flat = map.reshape(map.shape[0] * map.shape[1], map.shape[2], map.shape[3]);
            double err = FixtureTensors.MaxAbsDiff(flat, reference);
            Assert.True(err <= 1e-5, $"{path}: max abs error {err}");
        }
    }

    [Fact]
    public void AWrongTimestepIsDetected()
    {
        // Guards the tolerance: t=1 and t=999 differ far beyond it, so the parity test can fail.
        using var scope = NewDisposeScope();
        var io = FixtureTensors.Read(Path.Combine(ModelTestConfigs.TinySd1, "unet_io.safetensors"));
        Assert.True(FixtureTensors.MaxAbsDiff(io["out_sample_t1"], io["out_sample_t999"]) > 1e-3);
    }
}

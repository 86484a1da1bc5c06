using Xunit;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

public sealed class UNetStructureTests
{
    [Fact]
    public void Sd2StyleUNetHasDiffusersKeysAndShapes()
    {
        using var unet = new UNet2DConditionModel(ModelTestConfigs.Sd2Style());
        var shapes = unet.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var expected = new Dictionary<string, long[]>
        {
            ["time_embedding.linear_1.weight"] = [64, 16],
            ["time_embedding.linear_2.weight"] = [64, 64],
            ["conv_in.weight"] = [16, 4, 3, 3],
            ["down_blocks.0.resnets.1.time_emb_proj.weight"] = [16, 64],
            ["down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight"] = [16, 16],
            ["down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight"] = [32, 24],
            ["down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_out.0.bias"] = [32],
            ["down_blocks.1.attentions.0.proj_in.weight"] = [32, 32],
            ["down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"] = [256, 32],
            ["down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.weight"] = [32, 128],
            ["down_blocks.1.attentions.0.transformer_blocks.0.norm3.weight"] = [32],
            ["down_blocks.1.resnets.0.conv_shortcut.weight"] = [32, 16, 1, 1],
            ["down_blocks.1.downsamplers.0.conv.weight"] = [32, 32, 3, 3],
            ["down_blocks.2.resnets.1.conv2.weight"] = [64, 64, 3, 3],
            ["mid_block.attentions.0.proj_in.weight"] = [64, 64],
            ["mid_block.attentions.0.proj_out.weight"] = [64, 64],
            ["mid_block.attentions.0.norm.weight"] = [64],
            ["mid_block.resnets.1.norm2.bias"] = [64],
            ["up_blocks.0.resnets.2.conv_shortcut.weight"] = [64, 96, 1, 1],
            ["up_blocks.0.resnets.0.conv1.weight"] = [64, 128, 3, 3],
            ["up_blocks.0.upsamplers.0.conv.weight"] = [64, 64, 3, 3],
            ["up_blocks.1.resnets.2.conv1.weight"] = [32, 48, 3, 3],
            ["up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v.weight"] = [32, 24],
            ["up_blocks.2.resnets.0.conv1.weight"] = [16, 48, 3, 3],
            ["up_blocks.2.attentions.2.transformer_blocks.0.attn2.to_q.weight"] = [16, 16],
            ["conv_norm_out.weight"] = [16],
            ["conv_out.weight"] = [4, 16, 3, 3],
        };
        foreach (var (key, shape) in expected)
        {
            Assert.True(shapes.ContainsKey(key), $"missing {key}");
            Assert.Equal(shape, shapes[key]);
        }
        // No upsampler on the last up block, no downsampler on the last down block, no attention in DownBlock2D / UpBlock2D.
        Assert.DoesNotContain(shapes.Keys, k => k.StartsWith("up_blocks.2.upsamplers", StringComparison.Ordinal));
        Assert.DoesNotContain(shapes.Keys, k => k.StartsWith("down_blocks.2.downsamplers", StringComparison.Ordinal));
        Assert.DoesNotContain(shapes.Keys, k => k.StartsWith("down_blocks.2.attentions", StringComparison.Ordinal));
        Assert.DoesNotContain(shapes.Keys, k => k.StartsWith("up_blocks.0.attentions", StringComparison.Ordinal));
        Assert.DoesNotContain(shapes.Keys, k => k.Contains("to_q.bias", StringComparison.Ordinal));
        Assert.DoesNotContain(shapes.Keys, k => k.Contains("net.1", StringComparison.Ordinal));
        Assert.DoesNotContain(shapes.Keys, k => k.StartsWith("down_blocks.0.resnets.0.conv_shortcut", StringComparison.Ordinal));
    }

    [Fact]
    public void CrossAttentionPathsListEveryAttn2WithItsDownscaleAndHeads()
    {
        using var unet = new UNet2DConditionModel(ModelTestConfigs.Sd2Style());
        var layers = unet.CrossAttentionPaths;
        // down 0 and 1: 2 each; mid: 1; up 1 and 2: 3 each.
        Assert.Equal(2 + 2 + 1 + 3 + 3, layers.Count);
        Assert.Contains(new CrossAttentionLayer("down_blocks.0.attentions.1.transformer_blocks.0.attn2", 1, 2), layers);
        Assert.Contains(new CrossAttentionLayer("mid_block.attentions.0.transformer_blocks.0.attn2", 4, 8), layers);
        Assert.Contains(new CrossAttentionLayer("up_blocks.1.attentions.2.transformer_blocks.0.attn2", 2, 4), layers);
        Assert.Contains(new CrossAttentionLayer("up_blocks.2.attentions.0.transformer_blocks.0.attn2", 1, 2), layers);
        var attn2 = unet.AttentionPaths.Where(p => p.EndsWith(".attn2", StringComparison.Ordinal)).OrderBy(p => p).ToList();
        Assert.Equal(attn2, layers.Select(l => l.Path).OrderBy(p => p).ToList());
    }

    [Fact]
    public void Sd2StyleForwardShapesCaptureAndGradientsReachEveryParameter()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var unet = new UNet2DConditionModel(ModelTestConfigs.Sd2Style());
        var sample = randn(2, 4, 16, 16);
        var context = randn(2, 7, 24);
        using var capture = AttentionCapture.AtResolution(unet, latentSize: 16, resolution: 8);
        var output = unet.forward(sample, tensor(500L), context, capture);
        Assert.Equal(new long[] { 2, 4, 16, 16 }, output.shape);
        Assert.Equal(2 + 3, capture.Maps.Count); // down_blocks.1 (2) + up_blocks.1 (3)
        foreach (var (path, map) in capture.Maps)
        {
            Assert.Equal(new long[] { 2, 4, 64, 7 }, map.shape);
            Assert.True(map.requires_grad, path);
            var sums = map.sum(-1);
            Assert.True(allclose(sums, ones_like(sums), 1e-5, 1e-5), path);
        }
        var loss = output.pow(2).mean().add(capture.Maps.Values.Select(m => m.pow(2).mean()).Aggregate((a, b) => a.add(b)));
        loss.backward();
        var noGrad = unet.named_parameters().Where(p => p.parameter.grad is null || p.parameter.grad.abs().sum().item<float>() == 0f)
            .Select(p => p.name).ToList();
        Assert.True(noGrad.Count == 0, "no gradient: " + string.Join(", ", noGrad));
    }

    [Fact]
    public void CaptureOnAndOffGiveTheSameOutput()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        using var unet = new UNet2DConditionModel(ModelTestConfigs.Sd2Style());
        var sample = randn(1, 4, 8, 8);
        var context = randn(1, 5, 24);
        using var _ = no_grad();
        var plain = unet.forward(sample, tensor(new long[] { 10 }), context);
        using var capture = new AttentionCapture(unet.CrossAttentionPaths.Select(l => l.Path));
        var captured = unet.forward(sample, tensor(new long[] { 10 }), context, capture);
        Assert.True(FixtureTensors.MaxAbsDiff(captured, plain) < 1e-5);
        Assert.Equal(unet.CrossAttentionPaths.Count, capture.Maps.Count);
        Assert.False(capture.Maps.Values.First().requires_grad);
    }

    [Fact]
    public void CaptureRejectsUnknownPathsAndReuse()
    {
        using var scope = NewDisposeScope();
        using var unet = new UNet2DConditionModel(ModelTestConfigs.Sd2Style());
        var sample = randn(1, 4, 8, 8);
        var context = randn(1, 5, 24);
        using var bad = new AttentionCapture(["down_blocks.0.attentions.0.transformer_blocks.0.attn3", "mid_block.attentions.0.transformer_blocks.0.attn2"]);
        var e = Assert.Throws<ArgumentException>(() => unet.forward(sample, tensor(1L), context, bad));
        Assert.Contains("down_blocks.0.attentions.0.transformer_blocks.0.attn3", e.Message);
        Assert.DoesNotContain("mid_block", e.Message.Split(';')[0]);

        using var capture = new AttentionCapture(["mid_block.attentions.0.transformer_blocks.0.attn2.processor"]);
        using (no_grad()) unet.forward(sample, tensor(1L), context, capture);
        Assert.Equal(["mid_block.attentions.0.transformer_blocks.0.attn2"], capture.Maps.Keys);
        Assert.Throws<InvalidOperationException>(() => unet.forward(sample, tensor(1L), context, capture));
        capture.Clear();
        using (no_grad()) unet.forward(sample, tensor(1L), context, capture);
        Assert.Single(capture.Maps);
    }

    [Fact]
    public void CapturedMapsJoinTheCallersDisposeScope()
    {
        using var unet = new UNet2DConditionModel(ModelTestConfigs.Sd2Style());
        using var capture = AttentionCapture.AtDownscale(unet, 4);
        Tensor output, map;
        using (var scope = NewDisposeScope())
        {
            var sample = randn(1, 4, 8, 8);
            var context = randn(1, 5, 24);
            using (no_grad()) output = unet.forward(sample, tensor(1L), context, capture);
            map = capture.Maps["mid_block.attentions.0.transformer_blocks.0.attn2"];
            Assert.False(map.IsInvalid);
        }
        Assert.True(output.IsInvalid);
        Assert.True(map.IsInvalid);
        capture.Clear(); // disposing again is harmless
        Assert.Empty(capture.Maps);
    }
}

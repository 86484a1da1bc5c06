using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>
/// Gradient checkpointing of the UNet is exact: the same output, captured maps and gradients (LoRA factors, full weights,
/// the text states, through the attention maps too) with and without it, for <c>backward()</c> and <c>autograd.grad</c>.
/// </summary>
public sealed class GradientCheckpointingTests
{
    private const double Tolerance = 1e-6;

    /// <summary>Output, maps and the gradients of one capturing forward + backward, copied out of the step scope.</summary>
    private sealed record Pass(Dictionary<string, Tensor> Values) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in Values.Values) t.Dispose();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GradientsAndMapsEqualThoseWithoutCheckpointing(bool full)
    {
        using var model = TinyStableDiffusion.Create(seed: 3);
        var unet = model.UNetModel;
        using var generator = new Generator(11);
        using var lora = full ? null : LoraAdapters.Attach(unet, "unet", LoraOptions.UNetTargets, new LoraOptions { Rank = 2 }, generator);
        if (lora is null)
        {
            foreach (var p in unet.parameters()) p.requires_grad = true;
        }
        else
        {
            using (no_grad()) foreach (var layer in lora.Layers) layer.B.copy_(randn(layer.B.shape, generator: generator).mul(0.1));
            lora.Apply(training: false);
        }
        var x = randn([2, 4, 8, 8], generator: generator).DetachFromDisposeScope();
        var context = randn([2, 77, 32], generator: generator).DetachFromDisposeScope();
        var paths = unet.CrossAttentionPaths.Select(l => l.Path).ToList();
        Assert.Equal(4, paths.Count);

        using var plain = Run(unet, lora, x, context, paths, checkpointing: false);
        Assert.Equal(0, unet.CheckpointRecomputations);
        using var checkpointed = Run(unet, lora, x, context, paths, checkpointing: true);
        // 8 resnets (1 + 1 down, 2 mid, 2 + 2 up) and 4 transformers (1 down, 1 mid, 2 up) ran again in backward; with LoRA the
        // first resnet has nothing to differentiate (frozen weights, an input without grad) and is not checkpointed.
        Assert.Equal(full ? 12 : 11, unet.CheckpointRecomputations);

        Assert.Equal(plain.Values.Keys.Order(), checkpointed.Values.Keys.Order());
        Assert.Contains("grad:context", plain.Values.Keys);
        Assert.True(plain.Values.Keys.Count(k => k.StartsWith("grad:", StringComparison.Ordinal)) > (full ? 100 : 60));
        foreach (var (key, expected) in plain.Values)
        {
            double scale = Math.Max(1.0, expected.abs().max().item<float>());
            double err = (expected - checkpointed.Values[key]).abs().max().item<float>();
            Assert.True(err <= Tolerance * scale, $"{key}: max abs difference {err} (scale {scale})");
        }
        Assert.False(unet.GradientCheckpointing);
        x.Dispose();
        context.Dispose();
    }

    [Fact]
    public void AutogradGradThroughCheckpointsEqualsThePlainGraphAndTouchesNoGrad()
    {
        using var model = TinyStableDiffusion.Create(seed: 4);
        var unet = model.UNetModel;
        using var generator = new Generator(5);
        using var lora = LoraAdapters.Attach(unet, "unet", LoraOptions.UNetTargets, new LoraOptions { Rank = 2 }, generator);
        lora.Apply(training: false);
        var weights = lora.Layers.Select(l => (Tensor)l.Target.weight!).ToList();
        var path = unet.CrossAttentionPaths[0].Path;
        using var scope = NewDisposeScope();
        var x = randn([1, 4, 8, 8], generator: generator);
        var context = randn([1, 77, 32], generator: generator);

        List<Tensor> Grad(bool checkpointing)
        {
            unet.GradientCheckpointing = checkpointing;
            using var capture = new AttentionCapture([path]);
            var output = unet.forward(x, tensor(new long[] { 500 }), context, capture);
            var loss = output.square().mean() + capture.Maps[path].square().sum();
            var grads = autograd.grad([loss], weights, retain_graph: true).ToList();
            (loss * 0).backward(); // the retained graph still runs (and adds zeros)
            unet.GradientCheckpointing = false;
            return grads;
        }

        var plain = Grad(false);
        var checkpointed = Grad(true);
        for (int i = 0; i < weights.Count; i++)
        {
            double err = (plain[i] - checkpointed[i]).abs().max().item<float>();
            Assert.True(err <= Tolerance * Math.Max(1.0, plain[i].abs().max().item<float>()), $"{lora.Layers[i].Path}: {err}");
            Assert.True(weights[i].grad is null || weights[i].grad!.abs().max().item<float>() == 0, $"{lora.Layers[i].Path}: .grad was touched");
        }
        Assert.Contains(plain, g => g.abs().max().item<float>() > 0);
    }

    [Fact]
    public void ANoGradForwardIsTheSameWithCheckpointingOn()
    {
        using var model = TinyStableDiffusion.Create(seed: 6);
        var unet = model.UNetModel;
        using var scope = NewDisposeScope();
        using var generator = new Generator(7);
        var x = randn([1, 4, 8, 8], generator: generator);
        var context = randn([1, 77, 32], generator: generator);
        var path = unet.CrossAttentionPaths[^1].Path;
        using var a = new AttentionCapture([path]);
        using var b = new AttentionCapture([path]);
        using var noGrad = no_grad();
        var plain = unet.forward(x, tensor(3L), context, a);
        unet.GradientCheckpointing = true;
        var checkpointed = unet.forward(x, tensor(3L), context, b);
        unet.GradientCheckpointing = false;
        Assert.Equal(0f, (plain - checkpointed).abs().max().item<float>());
        Assert.Equal(0f, (a.Maps[path] - b.Maps[path]).abs().max().item<float>());
    }

    private static Pass Run(UNet2DConditionModel unet, LoraAdapters? lora, Tensor x, Tensor contextValue, List<string> paths, bool checkpointing)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (var p in unet.parameters()) p.grad?.zero_();
        if (lora is not null) foreach (var p in lora.Parameters()) p.grad?.zero_();
        unet.GradientCheckpointing = checkpointing;
        try
        {
            using var scope = NewDisposeScope();
            var context = contextValue.detach().requires_grad_(true); // as with text-encoder LoRA
            using var capture = new AttentionCapture(paths);
            var output = unet.forward(x, tensor(new long[] { 100, 900 }), context, capture);
            Assert.Equal(paths.Count, capture.Maps.Count);
            var loss = output.square().mean();
            for (int i = 0; i < paths.Count; i++)
            {
                using var weights = new Generator((ulong)(100 + i));
                var map = capture.Maps[paths[i]];
                loss = loss + map.mul(randn(map.shape, generator: weights)).sum();
                result[$"map:{paths[i]}"] = map.detach().clone().DetachFromDisposeScope();
            }
            loss.backward();
            lora?.AccumulateFactorGradients();
            result["output"] = output.detach().clone().DetachFromDisposeScope();
            result["grad:context"] = context.grad!.clone().DetachFromDisposeScope();
            var trained = lora is null ? unet.named_parameters().Select(n => (n.name, (Tensor)n.parameter))
                : lora.StateEntries().Select(e => (e.Key, e.Value));
            foreach (var (name, p) in trained)
                if (p.grad is { } g) result[$"grad:{name}"] = g.clone().DetachFromDisposeScope();
        }
        finally
        {
            unet.GradientCheckpointing = false;
        }
        return new Pass(result);
    }
}

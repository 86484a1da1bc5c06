using CTCal.Trainer.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>A small module tree with diffusers-style names: attn.to_q/to_k/to_v/to_out.0 and a non-target ff.</summary>
internal sealed class ToyAttentionBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ToyAttention attn;
    private readonly Linear ff;
#pragma warning restore IDE1006

    public ToyAttentionBlock(int dim) : base(nameof(ToyAttentionBlock))
    {
        attn = new ToyAttention(dim);
        ff = nn.Linear(dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => ff.forward(attn.forward(x)) + x;
}

internal sealed class ToyAttention : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear to_q, to_k, to_v;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> to_out;
#pragma warning restore IDE1006

    public ToyAttention(int dim) : base(nameof(ToyAttention))
    {
        to_q = nn.Linear(dim, dim, hasBias: false);
        to_k = nn.Linear(dim, dim, hasBias: false);
        to_v = nn.Linear(dim, dim, hasBias: false);
        to_out = new ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var attn = to_q.forward(x).matmul(to_k.forward(x).transpose(1, 2)).softmax(-1); // [B, N, N]
        return to_out[0].forward(attn.matmul(to_v.forward(x)));
    }
}

public sealed class LoraTests
{
    /// <summary>The same block every time (weights from a private generator, not torch's shared global RNG).</summary>
    private static ToyAttentionBlock NewBlock()
    {
        var block = new ToyAttentionBlock(6);
        using var generator = new Generator(3);
        DeterministicInit.Reset(block, generator);
        return block;
    }

    private static (ToyAttentionBlock Model, LoraAdapters Lora) NewModel(double dropout = 0, int rank = 2, double alpha = 4)
    {
        var model = NewBlock();
        var lora = LoraAdapters.Attach(model, "unet", LoraOptions.UNetTargets, new LoraOptions { Rank = rank, Alpha = alpha, Dropout = dropout }, new Generator(5));
        return (model, lora);
    }

    [Fact]
    public void AttachFindsTheAttentionProjectionsAndStartsAsIdentity()
    {
        using var scope = NewDisposeScope();
        var reference = NewBlock();
        var (model, lora) = NewModel();
        Assert.Equal(["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"], lora.Layers.Select(l => l.Path));
        Assert.All(model.parameters(), p => Assert.False(p.requires_grad && !lora.Layers.Any(l => ReferenceEquals(l.Target.weight, p)) ));

        var x = randn(2, 5, 6);
        lora.Apply(training: false);
        Assert.True(allclose(reference.forward(x), model.forward(x), atol: 1e-6));
        Assert.Equal(8, lora.Parameters().Count());
        Assert.Equal(1.0 * 4 / 2, lora.Layers[0].Scale);
    }

    [Fact]
    public void FactorGradientsEqualAnExplicitLoraForward()
    {
        using var scope = NewDisposeScope();
        var (model, lora) = NewModel();
        using (no_grad()) foreach (var l in lora.Layers) l.B.normal_(0, 0.3);
        var x = randn(2, 5, 6);
        var target = randn(2, 5, 6);

        lora.Apply(training: false);
        nn.functional.mse_loss(model.forward(x), target).backward();
        lora.AccumulateFactorGradients();
        var folded = lora.Parameters().Select(p => p.grad!.clone()).ToList();
        Assert.All(lora.Layers, l => Assert.Equal(0f, l.Target.weight!.grad!.abs().sum().item<float>()));

        // Explicit LoRA: x W0ᵀ + s x Aᵀ Bᵀ, with the same factors, through an independent computation graph.
        foreach (var p in lora.Parameters()) p.grad!.zero_();
        var byPath = lora.Layers.ToDictionary(l => l.Path);
        Tensor Proj(string path, Tensor input)
        {
            var l = byPath[path];
            var y = input.matmul(l.BaseWeight.t()) + input.matmul(l.A.t()).matmul(l.B.t()).mul(l.Scale);
            return path == "attn.to_out.0" ? y + l.Target.bias! : y;
        }
        var attn = Proj("attn.to_q", x).matmul(Proj("attn.to_k", x).transpose(1, 2)).softmax(-1);
        var h = Proj("attn.to_out.0", attn.matmul(Proj("attn.to_v", x)));
        var ff = (Linear)model.named_modules().Single(m => m.name == "ff").module;
        var explicitOut = ff.forward(h) + x;
        nn.functional.mse_loss(explicitOut, target).backward();
        var explicitGrads = lora.Parameters().Select(p => p.grad!).ToList();

        for (int i = 0; i < folded.Count; i++)
            Assert.True(allclose(folded[i], explicitGrads[i], rtol: 1e-4, atol: 1e-6), $"gradient {i} differs");
    }

    [Fact]
    public void TrainingTheAdaptersLowersTheLossAndLeavesTheBaseUntouched()
    {
        using var scope = NewDisposeScope();
        var (model, lora) = NewModel();
        var baseCopy = lora.Layers.Select(l => l.BaseWeight.clone()).ToList();
        var ffWeight = model.parameters().First(p => p.shape.SequenceEqual(new long[] { 6, 6 }) && !lora.Layers.Any(l => ReferenceEquals(l.Target.weight, p)));
        var ffBefore = ffWeight.clone();
        var x = randn(4, 5, 6);
        var target = randn(4, 5, 6);
        var optimizer = optim.Adam(lora.Parameters(), lr: 0.05);
        double first = 0, last = 0;
        for (int step = 0; step < 30; step++)
        {
            optimizer.zero_grad();
            lora.Apply(training: true);
            var loss = nn.functional.mse_loss(model.forward(x), target);
            loss.backward();
            lora.AccumulateFactorGradients();
            optimizer.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < first * 0.9, $"loss {first} -> {last}");
        for (int i = 0; i < baseCopy.Count; i++) Assert.True(baseCopy[i].eq(lora.Layers[i].BaseWeight).all().item<bool>());
        Assert.True(ffBefore.eq(ffWeight).all().item<bool>());
    }

    [Fact]
    public void DropoutMasksInputFeaturesOnlyWhileTraining()
    {
        using var scope = NewDisposeScope();
        var (_, lora) = NewModel(dropout: 0.5);
        var layer = lora.Layers[0];
        using (no_grad()) layer.B.fill_(1);
        lora.Apply(training: false);
        var evalDelta = layer.Target.weight! - layer.BaseWeight;
        Assert.True(allclose(evalDelta, layer.B.matmul(layer.A).mul(layer.Scale), atol: 1e-6));
        lora.Apply(training: true, new Generator(1));
        var trainDelta = (layer.Target.weight! - layer.BaseWeight).abs().sum(new long[] { 0 }); // per input column
        Assert.Contains(0f, trainDelta.data<float>().ToArray());
    }

    [Fact]
    public void MergeFoldsTheScaledProductAndStateRoundTrips()
    {
        using var scope = NewDisposeScope();
        var (model, lora) = NewModel();
        using (no_grad()) foreach (var l in lora.Layers) l.B.normal_(0, 0.2);
        var saved = lora.StateEntries().ToDictionary(e => e.Key, e => e.Value.clone());
        Assert.Contains("unet.attn.to_out.0.lora_A.weight", saved.Keys);
        Assert.Equal(new long[] { 2, 6 }, saved["unet.attn.to_q.lora_A.weight"].shape);
        Assert.Equal(new long[] { 6, 2 }, saved["unet.attn.to_q.lora_B.weight"].shape);

        lora.Merge();
        foreach (var l in lora.Layers)
            Assert.True(allclose(l.Target.weight!, l.BaseWeight + l.B.matmul(l.A).mul(2.0), atol: 1e-6));
        Assert.All(model.parameters(), p => Assert.False(p.requires_grad));

        var (_, other) = NewModel();
        other.Load(saved, "test");
        foreach (var ((_, a), (_, b)) in other.StateEntries().Zip(lora.StateEntries())) Assert.True(a.eq(b).all().item<bool>());

        var wrong = new Dictionary<string, Tensor>(saved) { ["unet.attn.to_q.lora_A.weight"] = zeros(3, 6) };
        var e = Assert.Throws<InvalidDataException>(() => other.Load(wrong, "x.safetensors"));
        Assert.Contains("unet.attn.to_q.lora_A.weight", e.Message);
        var extra = new Dictionary<string, Tensor>(saved) { ["unet.attn.to_z.lora_A.weight"] = zeros(2, 6) };
        Assert.Contains("to_z", Assert.Throws<InvalidDataException>(() => other.Load(extra, "x.safetensors")).Message);
    }
}

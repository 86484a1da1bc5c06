using Xunit;
using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>SD3 transformer naming, strict loading, capture contract and gradients (tiny fixture model).</summary>
public sealed class SD3TransformerStructureTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-sd3");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string TransformerFolder => Path.Combine(SD3TransformerParityTests.TinySd3, "transformer");

    private static string WeightsFile => Path.Combine(TransformerFolder, "diffusion_pytorch_model.safetensors");

    private static SD3Transformer2DModel Tiny() => new(SD3TransformerConfig.Load(Path.Combine(TransformerFolder, "config.json")));

    [Fact]
    public void StateDictKeysAndShapesAreExactlyTheCheckpointsTensors()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny();
        using var file = SafetensorsFile.Open(WeightsFile);
        var state = model.state_dict();
        Assert.Equal(file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), state.Keys.Order(StringComparer.Ordinal));
        foreach (var t in file.Tensors) Assert.True(t.Shape.SequenceEqual(state[t.Name].shape), t.Name);
        // The last block is context_pre_only: AdaLayerNormContinuous for the text stream, no to_add_out, no ff_context.
        Assert.Contains("transformer_blocks.0.attn.to_add_out.weight", state.Keys);
        Assert.DoesNotContain("transformer_blocks.1.attn.to_add_out.weight", state.Keys);
        Assert.DoesNotContain(state.Keys, k => k.StartsWith("transformer_blocks.1.ff_context.", StringComparison.Ordinal));
        Assert.Equal([64L, 32], state["transformer_blocks.1.norm1_context.linear.weight"].shape);
    }

    [Fact]
    public void JointAttentionPathsListEveryBlockWithPatchDownscaleAndHeads()
    {
        using var model = Tiny();
        Assert.Equal(
            [new CrossAttentionLayer("transformer_blocks.0.attn", 2, 4), new CrossAttentionLayer("transformer_blocks.1.attn", 2, 4)],
            model.JointAttentionPaths);
        Assert.Equal(model.JointAttentionPaths.Select(l => l.Path).Order(StringComparer.Ordinal), model.AttentionPaths.Order(StringComparer.Ordinal));
        using var capture = AttentionCapture.AtDownscale(model.JointAttentionPaths, 2);
        Assert.Equal(2, capture.Paths.Count);
        Assert.Throws<ArgumentException>(() => AttentionCapture.AtDownscale(model.JointAttentionPaths, 4));
    }

    [Fact]
    public void StrictLoadNamesMissingAndUnexpectedKeysAndLeavesTheModelUntouched()
    {
        using var scope = NewDisposeScope();
        using var source = SafetensorsFile.Open(WeightsFile);
        var entries = new List<SafetensorsWriteEntry>();
        foreach (var t in source.Tensors)
        {
            if (t.Name == "transformer_blocks.0.attn.add_q_proj.weight") continue;                        // missing
            string name = t.Name == "transformer_blocks.1.attn.to_q.bias" ? "transformer_blocks.1.attn.to_add_out.bias" : t.Name; // unexpected + missing
            entries.Add(SafetensorsWriteEntry.FromFloat32(name, t.Shape, source.ReadAsFloat32(t.Name)));
        }
        string file = Path.Combine(_dir, "diffusion_pytorch_model.safetensors");
        SafetensorsWriter.Write(file, entries);

        using var model = Tiny();
        var before = model.state_dict()["context_embedder.weight"].clone();
        var e = Assert.Throws<StateDictMismatchException>(() => DiffusersWeights.Load(model, _dir));
        Assert.Equal(["transformer_blocks.0.attn.add_q_proj.weight", "transformer_blocks.1.attn.to_q.bias"], e.Missing);
        Assert.Equal(["transformer_blocks.1.attn.to_add_out.bias"], e.Unexpected);
        Assert.Contains("transformer_blocks.0.attn.add_q_proj.weight", e.Message);
        Assert.Contains("transformer_blocks.1.attn.to_add_out.bias", e.Message);
        Assert.True(model.state_dict()["context_embedder.weight"].eq(before).all().item<bool>());

        // The position table is a checkpoint key like any weight.
        SafetensorsWriter.Write(file, source.Tensors.Where(t => t.Name != "pos_embed.pos_embed")
            .Select(t => SafetensorsWriteEntry.FromFloat32(t.Name, t.Shape, source.ReadAsFloat32(t.Name))).ToList());
        e = Assert.Throws<StateDictMismatchException>(() => DiffusersWeights.Load(model, file));
        Assert.Equal(["pos_embed.pos_embed"], e.Missing);
    }

    [Fact]
    public void CaptureOfAnUnknownPathThrowsBeforeRunningAndCaptureIsOnePass()
    {
        using var scope = NewDisposeScope();
        using var model = SD3Transformer2DModel.FromFolder(TransformerFolder);
        var x = randn(1, 4, 8, 8);
        var text = randn(1, 5, 32);
        var pooled = randn(1, 16);
        using var bad = new AttentionCapture(["transformer_blocks.0.attn", "transformer_blocks.2.attn", "transformer_blocks.0.attn2"]);
        // The timestep has the wrong shape too: running would fail on it, so naming the path shows nothing ran.
        var e = Assert.Throws<ArgumentException>(() => model.forward(x, text, pooled, zeros(3), bad));
        Assert.Contains("transformer_blocks.2.attn", e.Message);
        Assert.Contains("transformer_blocks.0.attn2", e.Message);
        Assert.DoesNotContain("timestep", e.Message);
        Assert.Empty(bad.Maps);

        using var capture = new AttentionCapture(["transformer_blocks.1.attn.processor"]);
        using (no_grad()) model.forward(x, text, pooled, full(1, 300f), capture);
        Assert.Equal(["transformer_blocks.1.attn"], capture.Maps.Keys);
        Assert.Equal([1L, 4, 16, 5], capture.Maps["transformer_blocks.1.attn"].shape); // [B, heads, (8/2)*(8/2), 5 text tokens]
        Assert.Throws<InvalidOperationException>(() => model.forward(x, text, pooled, full(1, 300f), capture));
        capture.Clear();
        using (no_grad()) model.forward(x, text, pooled, tensor(300f), capture); // a scalar timestep broadcasts
        Assert.Single(capture.Maps);
    }

    [Fact]
    public void InputShapesAreCheckedWithClearMessages()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny();
        var text = randn(1, 5, 32);
        var pooled = randn(1, 16);
        Assert.Contains("multiples of the patch size", Assert.Throws<ArgumentException>(() => model.forward(randn(1, 4, 7, 8), text, pooled, zeros(1))).Message);
        Assert.Contains("encoder_hidden_states", Assert.Throws<ArgumentException>(() => model.forward(randn(1, 4, 8, 8), randn(1, 5, 31), pooled, zeros(1))).Message);
        Assert.Contains("pooled_projections", Assert.Throws<ArgumentException>(() => model.forward(randn(1, 4, 8, 8), text, randn(1, 15), zeros(1))).Message);
        Assert.Contains("pos_embed_max_size", Assert.Throws<ArgumentException>(() => model.forward(randn(1, 4, 66, 66), text, pooled, zeros(1))).Message);
        // A non-square latent inside the table works.
        using (no_grad()) Assert.Equal([1L, 4, 8, 12], model.forward(randn(1, 4, 8, 12), text, pooled, zeros(1)).shape);
    }

    [Fact]
    public void CapturedMapsCarryGradientsIntoTheLoraTargetLinearsOfBothStreams()
    {
        using var scope = NewDisposeScope();
        using var model = SD3Transformer2DModel.FromFolder(TransformerFolder);
        var io = FixtureTensors.Read(Path.Combine(SD3TransformerParityTests.TinySd3, "transformer_io.safetensors"));
        using var capture = new AttentionCapture(SD3TransformerParityTests.Layers);
        model.forward(io["hidden_states"], io["encoder_hidden_states"], io["pooled_projections"], full(2, 500f), capture);
        var loss = capture.Maps.Values.Select(m => m.mul(m).sum()).Aggregate((a, b) => a.add(b));
        loss.backward();

        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        bool HasGradient(string name) => parameters[name].grad is { } g && g.abs().sum().item<float>() > 0;
        // Block 0 feeds both streams of block 1, so every projection of both streams gets a gradient.
        foreach (string linear in new[] { "to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out" })
            Assert.True(HasGradient($"transformer_blocks.0.attn.{linear}.weight"), $"block 0 {linear}");
        // Block 1's map depends on its image queries and keys and its text keys (not on values or outputs).
        foreach (string linear in new[] { "to_q", "to_k", "add_k_proj" })
            Assert.True(HasGradient($"transformer_blocks.1.attn.{linear}.weight"), $"block 1 {linear}");
        Assert.True(HasGradient("context_embedder.weight"));
        Assert.True(HasGradient("time_text_embed.timestep_embedder.linear_1.weight"));
    }

    [Fact]
    public void CapturePathGivesTheFusedPathsOutputGradients()
    {
        // The explicit probabilities (capture on) and the fused kernel (capture off) are the same function, so the gradient
        // of an output loss agrees too.
        using var scope = NewDisposeScope();
        using var model = SD3Transformer2DModel.FromFolder(TransformerFolder);
        var io = FixtureTensors.Read(Path.Combine(SD3TransformerParityTests.TinySd3, "transformer_io.safetensors"));
        Dictionary<string, Tensor> Gradients(AttentionCapture? capture)
        {
            model.zero_grad();
            var y = model.forward(io["hidden_states"], io["encoder_hidden_states"], io["pooled_projections"], full(2, 20f), capture);
            y.square().mean().backward();
            return model.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        }
        var fused = Gradients(null);
        using var capture = new AttentionCapture(SD3TransformerParityTests.Layers);
        var explicitPath = Gradients(capture);
        Assert.Equal(fused.Keys.Order(StringComparer.Ordinal), explicitPath.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, g) in fused)
        {
            double scale = Math.Max(1e-3, g.abs().max().item<float>());
            Assert.True(FixtureTensors.MaxAbsDiff(explicitPath[name], g) <= 1e-4 * scale, name);
        }
        Assert.True(fused["transformer_blocks.1.attn.to_q.weight"].abs().sum().item<float>() > 0);
    }

    [Fact]
    public void FeedForwardGeluIsTheTanhApproximation()
    {
        // diffusers' "gelu-approximate": distinguishable from the exact (erf) gelu the UNet uses.
        using var scope = NewDisposeScope();
        using var gelu = new GELU(5, 5);
        using (no_grad())
        {
            var p = gelu.named_parameters().ToDictionary(x => x.name, x => x.parameter);
            p["proj.weight"].copy_(eye(5));
            p["proj.bias"].zero_();
        }
        var x = linspace(-4, 4, 25).reshape(5, 5);
        Tensor y;
        using (no_grad()) y = gelu.forward(x);
        var tanhForm = x.mul(0.5).mul(x.add(x.pow(3).mul(0.044715)).mul(Math.Sqrt(2 / Math.PI)).tanh().add(1));
        Assert.True(FixtureTensors.MaxAbsDiff(y, tanhForm) <= 1e-6);
        Assert.True(FixtureTensors.MaxAbsDiff(y, nn.functional.gelu(x)) > 1e-4);
    }

    [Fact]
    public void AModelBuiltUnderAnEndedDisposeScopeKeepsItsPositionTable()
    {
        // pos_embed is the only tensor the model creates itself; it must outlive the scope the constructor ran in.
        SD3Transformer2DModel model;
        using (NewDisposeScope()) model = Tiny();
        using (model)
        using (var scope = NewDisposeScope())
        {
            Assert.Equal([1L, 1024, 32], model.state_dict()["pos_embed.pos_embed"].shape);
            using (no_grad()) Assert.Equal([1L, 4, 8, 8], model.forward(randn(1, 4, 8, 8), randn(1, 3, 32), randn(1, 16), zeros(1)).shape);
        }
    }
}

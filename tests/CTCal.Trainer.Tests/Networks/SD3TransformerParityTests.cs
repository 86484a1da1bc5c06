using Xunit;
using Xunit.Abstractions;
using CTCal.Core.Safetensors;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

/// <summary>The tiny SD3 transformer against diffusers 0.29.2's outputs and joint-attention blocks (tests/data/fixtures/sd3).</summary>
public sealed class SD3TransformerParityTests(ITestOutputHelper output)
{
    internal static string TinySd3 => Path.Combine(CTCal.Tests.TestPaths.Fixtures, "sd3", "tiny-sd3");

    internal static string[] Layers => ["transformer_blocks.0.attn", "transformer_blocks.1.attn"];

    [Theory]
    [InlineData(1000)]
    [InlineData(500)]
    [InlineData(20)]
    public void OutputAndBothJointAttentionBlocksMatchDiffusers(int t)
    {
        using var scope = NewDisposeScope();
        using var model = SD3Transformer2DModel.FromFolder(Path.Combine(TinySd3, "transformer"));
        var io = FixtureTensors.Read(Path.Combine(TinySd3, "transformer_io.safetensors"));
        var timestep = full(2, (float)t);

        using var capture = new AttentionCapture(Layers);
        Tensor captured, fused;
        using (no_grad())
        {
            captured = model.forward(io["hidden_states"], io["encoder_hidden_states"], io["pooled_projections"], timestep, capture);
            fused = model.forward(io["hidden_states"], io["encoder_hidden_states"], io["pooled_projections"], timestep);
        }

        double outCaptured = FixtureTensors.MaxAbsDiff(captured, io[$"out_t{t}"]);
        double outFused = FixtureTensors.MaxAbsDiff(fused, io[$"out_t{t}"]);
        output.WriteLine($"t={t}: out max abs error {outCaptured:E2} (capture on), {outFused:E2} (fused SDPA)");
        Assert.True(outCaptured <= 1e-4, $"out_t{t} with capture: max abs error {outCaptured}");
        Assert.True(outFused <= 1e-4, $"out_t{t} without capture: max abs error {outFused}");
        foreach (string layer in Layers)
        {
            var map = capture.Maps[layer];                      // [B, heads, 64 image tokens, 20 text tokens]
            var reference = io[$"attn_img2txt_t{t}/{layer}"];  // same layout
            double err = FixtureTensors.MaxAbsDiff(map, reference);
            output.WriteLine($"t={t}: {layer} max abs error {err:E2}");
            Assert.True(err <= 1e-5, $"{layer} at t={t}: max abs error {err}");
        }
    }

    [Fact]
    public void FixtureOutputsAndMapsDependOnTheTimestepBeyondTheTolerances()
    {
        // Guards the tolerances: a wrong timestep embedding would fail the parity test.
        using var scope = NewDisposeScope();
        var io = FixtureTensors.Read(Path.Combine(TinySd3, "transformer_io.safetensors"));
        Assert.True(FixtureTensors.MaxAbsDiff(io["out_t1000"], io["out_t20"]) > 1e-2);
        Assert.True(FixtureTensors.MaxAbsDiff(io["out_t1000"], io["out_t500"]) > 1e-3);
        foreach (string layer in Layers)
            Assert.True(FixtureTensors.MaxAbsDiff(io[$"attn_img2txt_t1000/{layer}"], io[$"attn_img2txt_t20/{layer}"]) > 1e-4, layer);
    }

    [Fact]
    public void CapturedBlockIsNotRenormalisedOverTextKeys()
    {
        // Each row is the text share of a softmax over image + text keys: positive, below one, and not the same for every
        // query. Normalising over text keys is the aggregator's job.
        using var scope = NewDisposeScope();
        using var model = SD3Transformer2DModel.FromFolder(Path.Combine(TinySd3, "transformer"));
        var io = FixtureTensors.Read(Path.Combine(TinySd3, "transformer_io.safetensors"));
        using var capture = new AttentionCapture([Layers[0]]);
        using (no_grad()) model.forward(io["hidden_states"], io["encoder_hidden_states"], io["pooled_projections"], full(2, 500f), capture);
        var rowSums = capture.Maps[Layers[0]].sum(-1); // [B, heads, 64]
        Assert.True(rowSums.gt(0).all().item<bool>());
        Assert.True(rowSums.lt(1).all().item<bool>());
        Assert.True(rowSums.min().item<float>() < 0.5); // the fixture's rows range from about 0.08 to 0.999
        Assert.True(rowSums.max().item<float>() - rowSums.min().item<float>() > 0.1);
    }

    [Fact]
    public void ComputedPositionTableEqualsTheCheckpointBuffer()
    {
        // pos_embed.pos_embed is a persistent buffer in diffusers whenever pos_embed_max_size is set (always for SD3), so it
        // is a checkpoint key; the model computes the same table, so one built without weights is complete.
        using var scope = NewDisposeScope();
        using var model = new SD3Transformer2DModel(CTCal.Core.Diffusers.SD3TransformerConfig.Load(Path.Combine(TinySd3, "transformer", "config.json")));
        var computed = model.state_dict()["pos_embed.pos_embed"];
        using var file = SafetensorsFile.Open(Path.Combine(TinySd3, "transformer", "diffusion_pytorch_model.safetensors"));
        var stored = tensor(file.ReadAsFloat32("pos_embed.pos_embed"), file.GetInfo("pos_embed.pos_embed").Shape);
        Assert.Equal([1L, 1024, 32], computed.shape);
        double err = FixtureTensors.MaxAbsDiff(computed, stored);
        output.WriteLine($"pos_embed table max abs error {err:E2}");
        Assert.True(err <= 1e-6, $"max abs error {err}");
    }

    [Fact]
    public void Bfloat16ModelCapturesFp32MapsCloseToTheReference()
    {
        // Half-precision inputs: the captured probabilities are computed in fp32 (the fused kernel accumulates in fp32 too).
        using var scope = NewDisposeScope();
        using var model = SD3Transformer2DModel.FromFolder(Path.Combine(TinySd3, "transformer"));
        model.to(ScalarType.BFloat16);
        var io = FixtureTensors.Read(Path.Combine(TinySd3, "transformer_io.safetensors"));
        using var capture = new AttentionCapture(Layers);
        Tensor y;
        using (no_grad())
            y = model.forward(io["hidden_states"].to(ScalarType.BFloat16), io["encoder_hidden_states"].to(ScalarType.BFloat16),
                io["pooled_projections"].to(ScalarType.BFloat16), full(2, 500f), capture);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        double outErr = FixtureTensors.MaxAbsDiff(y, io["out_t500"]);
        output.WriteLine($"bf16 t=500: out max abs error {outErr:E2}");
        Assert.True(outErr <= 0.05, $"out max abs error {outErr}");
        foreach (string layer in Layers)
        {
            Assert.Equal(ScalarType.Float32, capture.Maps[layer].dtype);
            double err = FixtureTensors.MaxAbsDiff(capture.Maps[layer], io[$"attn_img2txt_t500/{layer}"]);
            output.WriteLine($"bf16 t=500: {layer} max abs error {err:E2}");
            Assert.True(err <= 0.02, $"{layer}: max abs error {err}");
        }
    }
}

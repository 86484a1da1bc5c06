using CTCal.Export;
using CTCal.Tests;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>A <see cref="TinyPipeline"/> exported once (all four parts) for the tests of one class.</summary>
public abstract class ExportedPipeline : IDisposable
{
    protected ExportedPipeline(TinyConfigs configs, int seed)
    {
        Pipeline = new TinyPipeline(configs, seed, TestPaths.NewTempDir($"ctcal-integration-{configs.Name}"));
        OnnxFolder = Path.Combine(Pipeline.Root, "onnx");
        OnnxExporter.Export(new ExportOptions { ModelFolder = Pipeline.Folder, OutputFolder = OnnxFolder });
    }

    public TinyPipeline Pipeline { get; }

    public string OnnxFolder { get; }

    public void Dispose()
    {
        Pipeline.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class Sd1Export() : ExportedPipeline(TinyConfigs.Sd1, seed: 11);

public sealed class Sd2Export() : ExportedPipeline(TinyConfigs.Sd2, seed: 23);

/// <summary>
/// TorchSharp model -> diffusers folder (DiffusersWeights.Save) -> OnnxExporter -> ONNX Runtime gives the TorchSharp
/// forward pass's outputs within 1e-4 (fp32) for every exported part.
/// </summary>
public abstract partial class ExportParityTests<TExport>(TExport export, Xunit.Abstractions.ITestOutputHelper log) where TExport : ExportedPipeline
{
    private TinyPipeline P => export.Pipeline;

    private string Onnx(string part) => Path.Combine(export.OnnxFolder, part, "model.onnx");

    [Theory]
    [InlineData(10f, 700f)]
    [InlineData(999f, 250.5f)]
    public void Unet_out_sample_matches_torch_for_a_batch_of_two_timesteps(float t0, float t1)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        int h = P.Configs.LatentHeight, w = P.Configs.LatentWidth;
        long d = P.UNet.Config.CrossAttentionDim;
        var sample = randn(new long[] { 2, 4, h, w }, generator: g);
        var context = randn(new long[] { 2, 7, d }, generator: g);
        var timesteps = tensor(new[] { t0, t1 });

        Tensor expected, otherTimesteps, otherContext;
        using (no_grad())
        {
            expected = P.UNet.forward(sample, timesteps, context);
            otherTimesteps = P.UNet.forward(sample, tensor(new[] { t1, t0 }), context);
            otherContext = P.UNet.forward(sample, timesteps, randn(new long[] { 2, 7, d }, generator: g));
        }
        // the weights are such that both conditioning paths shape the output (a test that could not tell them apart is useless)
        Assert.True(Compare.MaxAbsDiff(Compare.Floats(expected), Compare.Floats(otherTimesteps)) > 1e-2, "timestep has no visible effect");
        Assert.True(Compare.MaxAbsDiff(Compare.Floats(expected), Compare.Floats(otherContext)) > 1e-2, "encoder_hidden_states have no visible effect");

        using var ort = new Ort(Onnx("unet"));
        var (data, shape) = ort.Run(
            ("sample", Compare.Floats(sample), sample.shape),
            ("timestep", new[] { t0, t1 }, [2]),
            ("encoder_hidden_states", Compare.Floats(context), context.shape))["out_sample"];
        Compare.Agree("unet out_sample", data, shape, expected, log);
    }

    [Fact]
    public void Text_encoder_last_hidden_state_and_pooled_output_match_torch()
    {
        using var scope = NewDisposeScope();
        var config = P.TextEncoder.Config;
        int eos = config.EosTokenId, bos = config.BosTokenId, pad = config.PadTokenId;
        // Row 0 has ids above eos before and after it, so argmax pooling and first-eos pooling pick different positions
        // unless the config is the legacy eos_token_id == 2 one; row 1 ends in padding after eos; row 2 has no eos and a
        // tied largest id (both rules then take the first position: 1 for argmax, 0 for "first eos").
        int[] ids =
        [
            bos, 900, 17, 950, 3, eos, 990, 4, eos, pad, pad, pad,
            bos, 5, 6, 7, 8, 9, 10, 11, 12, eos, pad, pad,
            bos, 990, 5, 990, 6, 7, 8, 9, 10, 11, 12, 13,
        ];
        var input = tensor(ids.Select(i => (long)i).ToArray(), new long[] { 3, 12 });
        Tensor last, pooled;
        using (no_grad()) (last, pooled) = P.TextEncoder.forward(input);

        // legacy (SD1, eos 2 < the ids used): argmax = 990 at 6, 12 at 8, the first 990 at 1; else the first eos: 5, 9, none -> 0
        long[] picks = config.LegacyArgmaxPooling ? [6, 8, 1] : [5, 9, 0];
        for (int row = 0; row < 3; row++)
            Assert.True(Compare.MaxAbsDiff(Compare.Floats(pooled[row]), Compare.Floats(last[row, picks[row]])) == 0, $"row {row} pooled at position {picks[row]}");

        using var ort = new Ort(Onnx("text_encoder"));
        var outputs = ort.Run(("input_ids", ids, [3, 12]));
        Compare.Agree("text_encoder last_hidden_state", outputs["last_hidden_state"].Data, outputs["last_hidden_state"].Shape, last, log);
        Compare.Agree("text_encoder pooler_output", outputs["pooler_output"].Data, outputs["pooler_output"].Shape, pooled, log);
    }

    [Fact]
    public void Vae_decoder_sample_matches_torch()
    {
        using var scope = NewDisposeScope();
        var latents = randn(new long[] { 2, 4, P.Configs.LatentHeight, P.Configs.LatentWidth }, generator: new Generator(6));
        Tensor expected;
        using (no_grad()) expected = P.Vae.Decode(latents);

        using var ort = new Ort(Onnx("vae_decoder"));
        var (data, shape) = ort.Run(("latent_sample", Compare.Floats(latents), latents.shape))["sample"];
        Compare.Agree("vae_decoder sample", data, shape, expected, log);
    }

    [Fact]
    public void Vae_encoder_mean_and_logvar_match_torch()
    {
        using var scope = NewDisposeScope();
        int f = 1 << (P.Vae.Config.BlockOutChannels.Length - 1);
        var image = rand(new long[] { 2, 3, P.Configs.LatentHeight * f, P.Configs.LatentWidth * f }, generator: new Generator(7)).mul(2).sub(1);
        Tensor mean, logvar;
        using (no_grad()) (mean, logvar) = P.Vae.Encode(image);
        Assert.True(logvar.abs().max().item<float>() < 20f, "log-variance reached the clamp; the comparison would not test the raw output");

        using var ort = new Ort(Onnx("vae_encoder"));
        var (data, shape) = ort.Run(("sample", Compare.Floats(image), image.shape))["latent_parameters"];
        Assert.Equal(new long[] { 2, 8, P.Configs.LatentHeight, P.Configs.LatentWidth }, shape);
        var parameters = tensor(data, shape);
        var chunks = parameters.chunk(2, 1); // [B, 4, h, w] mean, [B, 4, h, w] logvar
        Compare.Agree("vae_encoder mean", Compare.Floats(chunks[0]), chunks[0].shape, mean, log);
        Compare.Agree("vae_encoder logvar", Compare.Floats(chunks[1]), chunks[1].shape, logvar, log);
    }
}

public sealed class Sd1ExportParityTests(Sd1Export export, Xunit.Abstractions.ITestOutputHelper log) : ExportParityTests<Sd1Export>(export, log), IClassFixture<Sd1Export>;

public sealed class Sd2ExportParityTests(Sd2Export export, Xunit.Abstractions.ITestOutputHelper log) : ExportParityTests<Sd2Export>(export, log), IClassFixture<Sd2Export>;

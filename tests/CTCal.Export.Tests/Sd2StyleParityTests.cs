using Xunit.Abstractions;

namespace CTCal.Export.Tests;

/// <summary>
/// Exported SD2-style graphs in ONNX Runtime vs the diffusers / transformers reference outputs (fixtures/tiny-sd2-style):
/// a UNet with linear proj_in/proj_out, per-block head counts (2, 4) and upcast_attention, a gelu CLIP text encoder fed
/// zero-padded ids, and the VAE.
/// </summary>
public sealed class Sd2StyleParityTests(TinySd2StyleExport export, ITestOutputHelper output) : IClassFixture<TinySd2StyleExport>
{
    private const float Tolerance = 1e-4f;

    private (float[] Data, long[] Shape) Read(string file, string tensor) => FixtureExport.Read(export.Folder, file, tensor);

    [Theory]
    [InlineData(1)]
    [InlineData(999)]
    public void Unet_matches_diffusers(int t)
    {
        var sample = Read("unet_io.safetensors", "sample");
        var context = Read("unet_io.safetensors", "encoder_hidden_states");
        var expected = Read("unet_io.safetensors", $"out_sample_t{t}");
        using var ort = new OrtRunner(export.Model("unet"));
        var actual = ort.Run(("sample", sample.Data, sample.Shape), ("timestep", new float[] { t, t }, [2]),
            ("encoder_hidden_states", context.Data, context.Shape))["out_sample"];
        Assert.Equal(expected.Shape, actual.Shape);
        float err = OrtRunner.MaxAbsDiff(actual.Data, expected.Data);
        output.WriteLine($"t={t}: max abs error {err:E2} (output max {OrtRunner.MaxAbs(expected.Data)})");
        Assert.True(err <= Tolerance, $"max abs error {err} at t={t}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(999)]
    public void Unet_cross_attention_probabilities_match_diffusers(int t)
    {
        // Needed besides the output check: in this fixture a wrong head count in the mid block moves out_sample by < 1e-6.
        var errors = AttentionProbe.Compare(export, t);
        Assert.Equal(7, errors.Count);
        foreach (var (key, (err, heads)) in errors)
        {
            output.WriteLine($"{key}: {heads} heads, max abs error {err:E2}");
            // diffusers' per-block attention_head_dim (2, 4) is the head count: 2 at 32 channels, 4 at 48 (down_blocks.1, mid, up_blocks.0).
            bool narrow = key.Contains("/down_blocks.0.", StringComparison.Ordinal) || key.Contains("/up_blocks.1.", StringComparison.Ordinal);
            Assert.Equal(narrow ? 2 : 4, heads);
            Assert.True(err <= 1e-5f, $"{key}: max abs error {err}");
        }
    }

    [Fact]
    public void Gelu_text_encoder_matches_transformers_on_zero_padded_ids()
    {
        var ids = FixtureExport.ReadIds(export.Folder, "text_encoder_io.safetensors", "input_ids");
        Assert.Equal(0, ids.Data[76]); // SD2 / OpenCLIP padding after the end-of-text token
        var last = Read("text_encoder_io.safetensors", "last_hidden_state");
        var pooled = Read("text_encoder_io.safetensors", "pooled_output");
        using var ort = new OrtRunner(export.Model("text_encoder"));
        var outputs = ort.Run(("input_ids", ids.Data, ids.Shape));
        Assert.Equal(last.Shape, outputs["last_hidden_state"].Shape);
        Assert.Equal(pooled.Shape, outputs["pooler_output"].Shape);
        float e1 = OrtRunner.MaxAbsDiff(outputs["last_hidden_state"].Data, last.Data);
        float e2 = OrtRunner.MaxAbsDiff(outputs["pooler_output"].Data, pooled.Data);
        output.WriteLine($"last_hidden_state {e1:E2}, pooler_output {e2:E2}");
        Assert.True(e1 <= Tolerance, $"last_hidden_state max abs error {e1}");
        Assert.True(e2 <= Tolerance, $"pooler_output max abs error {e2}");
    }

    [Fact]
    public void Vae_decoder_matches_diffusers()
    {
        var latents = Read("vae_io.safetensors", "latents");
        var decoded = Read("vae_io.safetensors", "decoded");
        using var ort = new OrtRunner(export.Model("vae_decoder"));
        var actual = ort.Run(("latent_sample", latents.Data, latents.Shape))["sample"];
        Assert.Equal(decoded.Shape, actual.Shape);
        float err = OrtRunner.MaxAbsDiff(actual.Data, decoded.Data);
        output.WriteLine($"decoded: max abs error {err:E2}");
        Assert.True(err <= Tolerance, $"max abs error {err}");
    }

    [Fact]
    public void Vae_encoder_matches_diffusers_mean_and_logvar()
    {
        var image = Read("vae_io.safetensors", "image");
        var mean = Read("vae_io.safetensors", "latent_mean");
        var logvar = Read("vae_io.safetensors", "latent_logvar");
        using var ort = new OrtRunner(export.Model("vae_encoder"));
        var moments = ort.Run(("sample", image.Data, image.Shape))["latent_parameters"];
        Assert.Equal([1, 8, 16, 16], moments.Shape);
        int half = moments.Data.Length / 2; // batch 1: channels 0..3 are the mean, 4..7 the log-variance
        float e1 = OrtRunner.MaxAbsDiff(moments.Data.AsSpan(0, half), mean.Data);
        float e2 = OrtRunner.MaxAbsDiff(moments.Data.AsSpan(half), logvar.Data);
        output.WriteLine($"mean {e1:E2}, logvar {e2:E2}");
        Assert.True(e1 <= Tolerance, $"mean max abs error {e1}");
        Assert.True(e2 <= Tolerance, $"logvar max abs error {e2}");
    }
}

namespace CTCal.Export.Tests;

/// <summary>Exported graphs in ONNX Runtime vs the diffusers / transformers reference outputs (fixtures/tiny-sd1).</summary>
public sealed class ParityTests(TinySd1Export export) : IClassFixture<TinySd1Export>
{
    private const float Tolerance = 1e-4f;

    [Theory]
    [InlineData(1)]
    [InlineData(999)]
    public void Unet_matches_diffusers(int t)
    {
        var sample = TinySd1Export.Read("unet_io.safetensors", "sample");
        var context = TinySd1Export.Read("unet_io.safetensors", "encoder_hidden_states");
        var expected = TinySd1Export.Read("unet_io.safetensors", $"out_sample_t{t}");
        using var ort = new OrtRunner(export.Model("unet"));
        var outputs = ort.Run(("sample", sample.Data, sample.Shape), ("timestep", new float[] { t, t }, [2]),
            ("encoder_hidden_states", context.Data, context.Shape));
        var actual = outputs["out_sample"];
        Assert.Equal(expected.Shape, actual.Shape);
        float err = OrtRunner.MaxAbsDiff(actual.Data, expected.Data);
        Assert.True(err <= Tolerance, $"max abs error {err} at t={t} (output max {OrtRunner.MaxAbs(expected.Data)})");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(999)]
    public void Unet_cross_attention_probabilities_match_diffusers(int t)
    {
        var errors = AttentionProbe.Compare(export, t);
        Assert.Equal(4, errors.Count);
        foreach (var (key, (err, heads)) in errors)
        {
            Assert.Equal(4, heads);
            Assert.True(err <= 1e-5f, $"{key}: max abs error {err}");
        }
    }

    [Fact]
    public void Text_encoder_matches_transformers()
    {
        var ids = TinySd1Export.ReadIds("text_encoder_io.safetensors", "input_ids");
        var last = TinySd1Export.Read("text_encoder_io.safetensors", "last_hidden_state");
        var pooled = TinySd1Export.Read("text_encoder_io.safetensors", "pooled_output");
        using var ort = new OrtRunner(export.Model("text_encoder"));
        var outputs = ort.Run(("input_ids", ids.Data, ids.Shape));
        Assert.Equal(last.Shape, outputs["last_hidden_state"].Shape);
        Assert.Equal(pooled.Shape, outputs["pooler_output"].Shape);
        float e1 = OrtRunner.MaxAbsDiff(outputs["last_hidden_state"].Data, last.Data);
        float e2 = OrtRunner.MaxAbsDiff(outputs["pooler_output"].Data, pooled.Data);
        Assert.True(e1 <= Tolerance, $"last_hidden_state max abs error {e1}");
        Assert.True(e2 <= Tolerance, $"pooler_output max abs error {e2}");
    }

    [Fact]
    public void Vae_decoder_matches_diffusers()
    {
        var latents = TinySd1Export.Read("vae_io.safetensors", "latents");
        var decoded = TinySd1Export.Read("vae_io.safetensors", "decoded");
        using var ort = new OrtRunner(export.Model("vae_decoder"));
        var actual = ort.Run(("latent_sample", latents.Data, latents.Shape))["sample"];
        Assert.Equal(decoded.Shape, actual.Shape);
        float err = OrtRunner.MaxAbsDiff(actual.Data, decoded.Data);
        Assert.True(err <= Tolerance, $"max abs error {err}");
    }

    [Fact]
    public void Vae_encoder_matches_diffusers_mean_and_logvar()
    {
        var image = TinySd1Export.Read("vae_io.safetensors", "image");
        var mean = TinySd1Export.Read("vae_io.safetensors", "latent_mean");
        var logvar = TinySd1Export.Read("vae_io.safetensors", "latent_logvar");
        using var ort = new OrtRunner(export.Model("vae_encoder"));
        var moments = ort.Run(("sample", image.Data, image.Shape))["latent_parameters"];
        Assert.Equal([1, 8, 16, 16], moments.Shape);
        int half = moments.Data.Length / 2; // batch 1: channels 0..3 are the mean, 4..7 the log-variance
        float e1 = OrtRunner.MaxAbsDiff(moments.Data.AsSpan(0, half), mean.Data);
        // The fixture's log-variance lies in [-0.21, 0.36], where diffusers' clamp to [-30, 20] does nothing: the graph's raw
        // output compares directly (Vae_encoder_log_variance_is_not_clamped covers values outside the clamp range).
        float e2 = OrtRunner.MaxAbsDiff(moments.Data.AsSpan(half), logvar.Data);
        Assert.True(e1 <= Tolerance, $"mean max abs error {e1}");
        Assert.True(e2 <= Tolerance, $"logvar max abs error {e2}");
    }

    [Fact]
    public void Vae_encoder_log_variance_is_not_clamped()
    {
        // quant_conv's log-variance rows (output channels 4..7, weights and bias) scaled by k: the raw log-variance becomes
        // k times the fixture's (which is unclamped, being inside [-30, 20]), here about [-41, 71], on both sides of the
        // clamp range. The graph documents latent_parameters as the unclamped quant_conv output, so it must give k * logvar.
        const float k = 200f;
        string root = TestModels.NewRoot();
        try
        {
            string model = Path.Combine(root, "model");
            Directory.CreateDirectory(Path.Combine(model, "vae"));
            File.Copy(Path.Combine(TinySd1Export.ModelFolder, "model_index.json"), Path.Combine(model, "model_index.json"));
            File.Copy(Path.Combine(TinySd1Export.ModelFolder, "vae", "config.json"), Path.Combine(model, "vae", "config.json"));
            TestModels.Rewrite(Path.Combine(TinySd1Export.ModelFolder, "vae", "diffusion_pytorch_model.safetensors"),
                Path.Combine(model, "vae", "diffusion_pytorch_model.safetensors"), (name, shape, data) =>
                {
                    if (name is not ("quant_conv.weight" or "quant_conv.bias")) return (shape, data);
                    int row = data.Length / 8; // [8, 8, 1, 1] or [8]: one row per output channel
                    var scaled = (float[])data.Clone();
                    for (int i = 4 * row; i < scaled.Length; i++) scaled[i] *= k;
                    return (shape, scaled);
                });
            string output = Path.Combine(root, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, Components = ExportComponents.VaeEncoder });

            var image = TinySd1Export.Read("vae_io.safetensors", "image");
            var mean = TinySd1Export.Read("vae_io.safetensors", "latent_mean");
            float[] expected = TinySd1Export.Read("vae_io.safetensors", "latent_logvar").Data.Select(v => k * v).ToArray();
            Assert.Contains(expected, v => v > 20f);
            Assert.Contains(expected, v => v < -30f);

            using var ort = new OrtRunner(Path.Combine(output, "vae_encoder", "model.onnx"));
            var moments = ort.Run(("sample", image.Data, image.Shape))["latent_parameters"];
            int half = moments.Data.Length / 2;
            float e1 = OrtRunner.MaxAbsDiff(moments.Data.AsSpan(0, half), mean.Data);
            float e2 = OrtRunner.MaxAbsDiff(moments.Data.AsSpan(half), expected);
            Assert.True(e1 <= Tolerance, $"mean max abs error {e1}");
            Assert.True(e2 <= k * Tolerance, $"logvar max abs error {e2} (tolerance {k * Tolerance})");
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

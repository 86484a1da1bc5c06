using System.Text.Json.Nodes;
using CTCal.Core.Models;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>The tiny-sd3 fixture's transformer (diffusers 0.29.2 SD3Transformer2DModel) exported once and shared.</summary>
public sealed class TinySd3TransformerExport : IDisposable
{
    public TinySd3TransformerExport()
    {
        Root = TestPaths.NewTempDir("ctcal-export-sd3");
        Output = Path.Combine(Root, "onnx");
        OnnxExporter.Export(new ExportOptions { ModelFolder = Folder, OutputFolder = Output, Components = ExportComponents.Transformer });
    }

    public static string Folder => Path.Combine(TestPaths.Fixtures, "sd3", "tiny-sd3");

    public string Root { get; }

    public string Output { get; }

    public string Model => Path.Combine(Output, "transformer", "model.onnx");

    public void Dispose()
    {
        try { Directory.Delete(Root, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

/// <summary>The exported SD3 transformer in ONNX Runtime vs diffusers 0.29.2's outputs recorded in fixtures/sd3/tiny-sd3.</summary>
public sealed class SD3TransformerFixtureTests(TinySd3TransformerExport export, Xunit.Abstractions.ITestOutputHelper log) : IClassFixture<TinySd3TransformerExport>
{
    private const float Tolerance = 1e-4f;

    [Theory]
    [InlineData(1000)]
    [InlineData(500)]
    [InlineData(20)]
    public void SD3_transformer_out_hidden_states_match_diffusers(int t)
    {
        const string io = "transformer_io.safetensors";
        var hidden = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "hidden_states");
        var context = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "encoder_hidden_states");
        var pooled = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "pooled_projections");
        var expected = FixtureExport.Read(TinySd3TransformerExport.Folder, io, $"out_t{t}");
        using var ort = new OrtRunner(export.Model);
        var outputs = ort.Run(("hidden_states", hidden.Data, hidden.Shape), ("encoder_hidden_states", context.Data, context.Shape),
            ("pooled_projections", pooled.Data, pooled.Shape), ("timestep", new float[] { t, t }, [2]));
        var actual = outputs["out_hidden_states"];
        Assert.Equal(expected.Shape, actual.Shape);
        float err = OrtRunner.MaxAbsDiff(actual.Data, expected.Data);
        log.WriteLine($"t={t}: max abs error {err:G3} (output max {OrtRunner.MaxAbs(expected.Data):G3})");
        Assert.True(err <= Tolerance, $"max abs error {err} at t={t} (output max {OrtRunner.MaxAbs(expected.Data)})");
    }

    [Fact]
    public void SD3_transformer_broadcasts_a_single_timestep_over_the_batch()
    {
        const string io = "transformer_io.safetensors";
        var hidden = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "hidden_states");
        var context = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "encoder_hidden_states");
        var pooled = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "pooled_projections");
        var expected = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "out_t500");
        using var ort = new OrtRunner(export.Model);
        var actual = ort.Run(("hidden_states", hidden.Data, hidden.Shape), ("encoder_hidden_states", context.Data, context.Shape),
            ("pooled_projections", pooled.Data, pooled.Shape), ("timestep", new float[] { 500 }, [1]))["out_hidden_states"];
        Assert.True(OrtRunner.MaxAbsDiff(actual.Data, expected.Data) <= Tolerance);
    }

    [Fact]
    public void SD3_transformer_fp16_export_stays_close_to_diffusers_and_halves_the_file()
    {
        string output = Path.Combine(export.Root, $"fp16-{Guid.NewGuid():N}");
        OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd3TransformerExport.Folder, OutputFolder = output, Components = ExportComponents.Transformer, Fp16 = true });
        const string io = "transformer_io.safetensors";
        var hidden = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "hidden_states");
        var context = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "encoder_hidden_states");
        var pooled = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "pooled_projections");
        var expected = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "out_t500");
        string model = Path.Combine(output, "transformer", "model.onnx");
        using var ort = new OrtRunner(model);
        var actual = ort.Run(("hidden_states", hidden.Data, hidden.Shape), ("encoder_hidden_states", context.Data, context.Shape),
            ("pooled_projections", pooled.Data, pooled.Shape), ("timestep", new float[] { 500, 500 }, [2]))["out_hidden_states"];
        float err = OrtRunner.MaxAbsDiff(actual.Data, expected.Data);
        log.WriteLine($"fp16 weights: max abs error {err:G3} (output max {OrtRunner.MaxAbs(expected.Data):G3})");
        Assert.True(err <= 2e-2f, $"fp16 weights: max abs error {err}");
        Assert.True(OnnxModelManifest.TryRead(output)!.Fp16);
        long fp32Bytes = new FileInfo(export.Model).Length, fp16Bytes = new FileInfo(model).Length;
        Assert.True(fp16Bytes < 0.6 * fp32Bytes, $"fp16 model {fp16Bytes} bytes vs fp32 {fp32Bytes}");
    }

    [Fact]
    public void SD3_transformer_with_external_data_gives_the_same_output()
    {
        string output = Path.Combine(export.Root, $"ext-{Guid.NewGuid():N}");
        OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd3TransformerExport.Folder, OutputFolder = output, Components = ExportComponents.Transformer, ExternalDataThreshold = 0 });
        string model = Path.Combine(output, "transformer", "model.onnx");
        Assert.True(File.Exists(model + ".data"));
        Assert.Equal(Run(export.Model, 500), Run(model, 500));
    }

    [Fact]
    public void SD3_transformer_refuses_a_latent_larger_than_the_position_table()
    {
        // The fixture's table is 32 x 32 patches of 2. A 68 x 68 latent is 34 x 34 patches: the centre "crop" starts at -1,
        // which a Slice reads as the last row and column, a single position that would broadcast over every token.
        using var ort = new OrtRunner(export.Model);
        foreach (long[] shape in new long[][] { [1, 4, 68, 68], [1, 4, 66, 16] })
        {
            var e = Assert.ThrowsAny<Exception>(() => ort.Run(("hidden_states", new float[shape.Aggregate(1L, (a, b) => a * b)], shape),
                ("encoder_hidden_states", new float[3 * 32], [1, 3, 32]), ("pooled_projections", new float[16], [1, 16]), ("timestep", new float[] { 1 }, [1])));
            log.WriteLine($"{string.Join("x", shape)}: {e.Message}");
        }
    }

    private static float[] Run(string model, float t)
    {
        const string io = "transformer_io.safetensors";
        var hidden = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "hidden_states");
        var context = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "encoder_hidden_states");
        var pooled = FixtureExport.Read(TinySd3TransformerExport.Folder, io, "pooled_projections");
        using var ort = new OrtRunner(model);
        return ort.Run(("hidden_states", hidden.Data, hidden.Shape), ("encoder_hidden_states", context.Data, context.Shape),
            ("pooled_projections", pooled.Data, pooled.Shape), ("timestep", new float[] { t, t }, [2]))["out_hidden_states"].Data;
    }

    [Fact]
    public void SD3_export_refuses_sd1_parts_and_sd1_export_refuses_sd3_parts_naming_them()
    {
        var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = TinySd3TransformerExport.Folder, OutputFolder = Path.Combine(export.Root, "bad-sd3"), Components = ExportComponents.Unet | ExportComponents.Transformer,
        }));
        Assert.Contains(e.Problems, p => p.StartsWith("components unet: not part of an SD3 model", StringComparison.Ordinal));
        e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = TinySd1Export.ModelFolder, OutputFolder = Path.Combine(export.Root, "bad-sd1"), Components = ExportComponents.Transformer | ExportComponents.TextEncoder2,
        }));
        Assert.Contains(e.Problems, p => p.StartsWith("components text_encoder_2, transformer: not part of an SD 1.x/2.x model", StringComparison.Ordinal));
    }

    [Fact]
    public void SD3_transformer_signature_and_initializer_names_are_optimum_and_diffusers()
    {
        using var ort = new OrtRunner(export.Model);
        Assert.Equal(["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"], ort.Session.InputNames);
        Assert.Equal(["out_hidden_states"], ort.Session.OutputNames);
        var summary = Onnx.OnnxModelSummary.Read(export.Model);
        Assert.Equal([1L, 32 * 32, 32], summary.Initializers["pos_embed.pos_embed"]); // the stored table, cropped in the graph
        Assert.Contains("transformer_blocks.1.norm1_context.linear.weight", summary.Initializers.Keys);
        Assert.Contains("transformer_blocks.0.attn.to_add_out.weight", summary.Initializers.Keys);
        Assert.DoesNotContain("transformer_blocks.1.attn.to_add_out.weight", summary.Initializers.Keys); // the last block is context_pre_only

        var manifest = OnnxModelManifest.TryRead(export.Output)!;
        Assert.Equal(ModelFamily.Sd3, manifest.Family);
        Assert.Equal(128, manifest.Width); // sample_size 16 x 8 (no VAE config: the default factor)
        Assert.Null(manifest.PredictionType);
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(export.Output, "model_index.json")))!;
        Assert.Equal("ORTStableDiffusion3Pipeline", (string?)index["_class_name"]);
        Assert.Equal("FlowMatchEulerDiscreteScheduler", (string?)index["scheduler"]![1]);
        Assert.Equal("OnnxRuntimeModel", (string?)index["transformer"]![1]);
    }
}

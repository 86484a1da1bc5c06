using CTCal.Core.Models;
using CTCal.Export;
using CTCal.Tests;
using Xunit;

namespace CTCal.Export.Tests;

/// <summary>
/// What the exporter records in <c>ctcal_manifest.json</c>, read back through Core's <see cref="OnnxModelManifest"/> (the
/// record the plugin reads): family and native size from the source's configs, the VAE scaling factor, the prediction type,
/// and the method, which is <c>base</c> only when nothing replaces or is merged into the weights and is never guessed.
/// </summary>
public sealed class ManifestTests(TinySd1Export sd1, TinySd2StyleExport sd2) : IClassFixture<TinySd1Export>, IClassFixture<TinySd2StyleExport>, IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-manifest");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void AnSd1ExportRecordsItsFamilySizeScalingAndMethodBase()
    {
        var m = OnnxModelManifest.TryRead(sd1.Output)!;
        // tiny-sd1: quick_gelu text encoder, conv projections; UNet sample_size 16 x VAE factor 2 (two VAE blocks) = 32 px.
        Assert.Equal(("sd1", 32, 32, 0.18215, "epsilon", "base"), (m.Family, m.Width, m.Height, m.VaeScalingFactor, m.PredictionType, m.Method));
        Assert.Equal((2, 17, 8, false), (m.FormatVersion, m.Opset, m.IrVersion, m.Fp16));
        Assert.StartsWith("CTCal.Export ", m.Exporter);
        Assert.Equal(Path.GetFullPath(sd1.Folder), m.SourceFolder);
        Assert.Null(m.UnetWeights);
        Assert.Empty(m.Loras);
        Assert.NotNull(m.Components!["unet"]);
    }

    /// <summary>tiny-sd2-style has a 40-wide gelu text encoder and linear projections: SD2 by architecture, whatever its width.</summary>
    [Fact]
    public void AnSd2StyleExportIsRecordedAsSd2WithVPrediction()
    {
        var m = OnnxModelManifest.TryRead(sd2.Output)!;
        Assert.Equal(("sd2", 32, 32, "v_prediction", "base"), (m.Family, m.Width, m.Height, m.PredictionType, m.Method));
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("vanilla", "vanilla")]
    [InlineData("ctcal", "ctcal")]
    public void ReplacedWeightsRecordTheGivenMethodAndTheirHashNeverAGuess(string? method, string? recorded)
    {
        string weights = Path.Combine(TinySd1Export.ModelFolder, "unet", "diffusion_pytorch_model.safetensors");
        string output = Path.Combine(_dir, "out");
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet,
            UnetWeights = weights, TrainingMethod = method, TrainingSteps = method is null ? null : 200,
        });
        var m = OnnxModelManifest.TryRead(output)!;
        Assert.Equal(recorded, m.Method);
        Assert.Equal(method is null ? null : 200, m.Steps);
        Assert.Equal(Path.GetFullPath(weights), m.UnetWeights!.Path);
        using var sha = System.Security.Cryptography.SHA256.Create();
        Assert.Equal(Convert.ToHexString(sha.ComputeHash(File.ReadAllBytes(weights))).ToLowerInvariant(), m.UnetWeights.Sha256);
    }

    [Fact]
    public void AnUnknownMethodIsRefusedBeforeAnythingIsWritten()
    {
        string output = Path.Combine(_dir, "out");
        var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, TrainingMethod = "gors",
        }));
        Assert.Contains("training method 'gors' is not one of base, vanilla, ctcal", e.Message);
        Assert.False(Directory.Exists(output));
    }
}

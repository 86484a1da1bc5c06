using CTCal.Core.Checkpoints;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>
/// The exporter reads every weights layout: an original single-file checkpoint gives the same ONNX files as the diffusers
/// folder it was written from (both families); fp16 variant, sharded and bf16 folders export; refusals name the file.
/// </summary>
public sealed class SingleFileExportTests : IDisposable
{
    private readonly string _root = TestModels.NewRoot();

    public void Dispose() => TestModels.DeleteQuietly(_root);

    private static readonly string[] Parts = ["text_encoder", "unet", "vae_decoder", "vae_encoder"];

    private string Export(string model, string name, SingleFileOptions? single = null, string? variant = null)
    {
        string output = Path.Combine(_root, name);
        OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, SingleFile = single, Variant = variant });
        return output;
    }

    private static void AssertSameOnnx(string expected, string actual)
    {
        foreach (string part in Parts)
        {
            byte[] a = File.ReadAllBytes(Path.Combine(expected, part, "model.onnx"));
            byte[] b = File.ReadAllBytes(Path.Combine(actual, part, "model.onnx"));
            Assert.True(a.AsSpan().SequenceEqual(b), $"{part}/model.onnx differs ({a.Length} vs {b.Length} bytes)");
            Assert.True(File.Exists(Path.Combine(actual, part, "config.json")));
        }
    }

    [Theory]
    [InlineData(ModelFamily.Sd1)]
    [InlineData(ModelFamily.Sd2)]
    public void Export_from_a_single_file_equals_export_from_the_folder(string family)
    {
        string folder = family == ModelFamily.Sd2 ? TestWeightFolders.TinySd2 : TestWeightFolders.TinySd1;
        string file = TestWeightFolders.WriteSingleFile(folder, Path.Combine(_root, "model.safetensors"), family,
            (map, sources) => TestWeightFolders.EmaCopy(map, sources, 1f).ToList());
        string fromFolder = Export(folder, "folder");
        string fromFile = Export(file, "file", new SingleFileOptions { ConfigFolder = folder });
        AssertSameOnnx(fromFolder, fromFile);
        Assert.True(File.Exists(Path.Combine(fromFile, "tokenizer", "vocab.json")));
        var manifest = OnnxModelManifest.TryRead(fromFile)!;
        Assert.Equal(family, manifest.Family);
        Assert.Equal(file, manifest.SourceFolder);

        // the EMA copy gives other UNet weights
        string ema = Export(file, "ema", new SingleFileOptions { ConfigFolder = folder, UseEma = true });
        Assert.False(File.ReadAllBytes(Path.Combine(ema, "unet", "model.onnx")).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(fromFile, "unet", "model.onnx"))));
    }

    [Fact]
    public void Single_file_with_derived_configs_exports_and_runs()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_root, "sd1.safetensors"), ModelFamily.Sd1);
        string output = Export(file, "derived", new SingleFileOptions { TokenizerFolder = Path.Combine(TestPaths.Fixtures, "clip-tokenizer"), ImageSize = 32 });
        float[] y = TestModels.RunUnet(output);
        Assert.All(y, v => Assert.True(float.IsFinite(v)));
        Assert.Equal("epsilon", OnnxModelManifest.TryRead(output)!.PredictionType);
    }

    [Fact]
    public void Single_file_without_a_tokenizer_or_as_pickle_is_refused_naming_the_file()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_root, "sd1.safetensors"), ModelFamily.Sd1);
        var e = Assert.Throws<ExportValidationException>(() => Export(file, "none"));
        Assert.Contains(file, e.Message);
        Assert.Contains("tokenizer", e.Message);
        // without the text encoder no tokenizer is needed
        OnnxExporter.Export(new ExportOptions { ModelFolder = file, OutputFolder = Path.Combine(_root, "unet-only"), Components = ExportComponents.Unet });

        string ckpt = Path.Combine(_root, "model.ckpt");
        File.WriteAllBytes(ckpt, [0x80, 0x02]);
        var p = Assert.Throws<ExportValidationException>(() => Export(ckpt, "pickle"));
        Assert.Contains(ckpt, p.Message);
        Assert.Contains("pickle", p.Message);
    }

    [Fact]
    public void Sharded_folder_exports_the_same_files_as_the_plain_folder()
    {
        string sharded = TestWeightFolders.Copy(TestWeightFolders.TinySd1, Path.Combine(_root, "sharded"), shards: 3);
        Assert.True(File.Exists(Path.Combine(sharded, "unet", "diffusion_pytorch_model.safetensors.index.json")));
        AssertSameOnnx(Export(TestWeightFolders.TinySd1, "plain"), Export(sharded, "from-shards"));
    }

    [Theory]
    [InlineData(SafetensorsDType.F16, "fp16", 1)]
    [InlineData(SafetensorsDType.BF16, null, 1)]
    [InlineData(SafetensorsDType.BF16, "bf16", 2)]
    public void Variant_and_half_precision_folders_export_close_to_fp32(SafetensorsDType dtype, string? variant, int shards)
    {
        string folder = TestWeightFolders.Copy(TestWeightFolders.TinySd1, Path.Combine(_root, "half"), dtype, variant, shards);
        string output = Export(folder, "half-out", variant: variant);
        float[] reference = TestModels.RunUnet(Export(TestWeightFolders.TinySd1, "ref"));
        float[] half = TestModels.RunUnet(output);
        float rel = OrtRunner.MaxAbsDiff(half, reference) / OrtRunner.MaxAbs(reference);
        Assert.True(rel <= 3e-2f, $"relative error {rel}");
        Assert.True(rel > 0f);
    }
}

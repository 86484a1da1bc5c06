using CTCal.Core.Threading;

namespace CTCal.Export.Tests;

/// <summary>An existing output folder is replaced only by a complete export; a failed export leaves it as it was.</summary>
public sealed class AtomicOutputTests
{
    private static Dictionary<string, byte[]> Snapshot(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).ToDictionary(f => Path.GetRelativePath(dir, f), File.ReadAllBytes);

    [Fact]
    public void Existing_output_survives_a_failed_export_and_is_replaced_by_a_good_one()
    {
        string root = TestModels.NewRoot();
        try
        {
            string output = Path.Combine(root, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.VaeDecoder });
            var before = Snapshot(output);

            // fails while writing the UNet (cancelled after the first weight bytes)
            using var cts = new CancellationTokenSource();
            var progress = new SynchronousProgress<ExportProgress>(p => { if (p.Component == "unet" && p.BytesDone > 0) cts.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() => OnnxExporter.Export(
                new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet }, progress, cts.Token));
            AssertSame(before, Snapshot(output));

            // fails validation (bad LoRA path)
            Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Loras = [new LoraSpec(Path.Combine(root, "nope.safetensors"))],
            }));
            AssertSame(before, Snapshot(output));
            Assert.Equal(["onnx"], Directory.EnumerateFileSystemEntries(root).Select(Path.GetFileName));

            // a complete export replaces the whole folder
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet });
            Assert.True(File.Exists(Path.Combine(output, "unet", "model.onnx")));
            Assert.False(Directory.Exists(Path.Combine(output, "vae_decoder")));
            Assert.Equal(["onnx"], Directory.EnumerateFileSystemEntries(root).Select(Path.GetFileName));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void A_foreign_non_empty_folder_is_not_replaced_without_force()
    {
        string root = TestModels.NewRoot();
        try
        {
            string output = Path.Combine(root, "photos");
            Directory.CreateDirectory(output);
            File.WriteAllText(Path.Combine(output, "keep.txt"), "mine");
            var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.VaeDecoder,
            }));
            Assert.Contains("ctcal_manifest.json", e.Message);
            Assert.Equal("mine", File.ReadAllText(Path.Combine(output, "keep.txt")));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void A_foreign_non_empty_folder_is_replaced_as_a_whole_with_force()
    {
        string root = TestModels.NewRoot();
        try
        {
            string output = Path.Combine(root, "photos");
            Directory.CreateDirectory(Path.Combine(output, "album"));
            File.WriteAllText(Path.Combine(output, "keep.txt"), "mine");
            File.WriteAllText(Path.Combine(output, "album", "a.jpg"), "not a picture");
            OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.VaeDecoder, Force = true,
            });
            Assert.Equal(["ctcal_manifest.json", "model_index.json", "scheduler", "tokenizer", "vae_decoder"],
                Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            Assert.True(File.Exists(Path.Combine(output, "vae_decoder", "model.onnx")));
            // Nothing of the old folder is left beside it either (no staging or renamed-aside folder).
            Assert.Equal(["photos"], Directory.EnumerateFileSystemEntries(root).Select(Path.GetFileName));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    private static void AssertSame(Dictionary<string, byte[]> expected, Dictionary<string, byte[]> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (k, v) in expected) Assert.True(v.AsSpan().SequenceEqual(actual[k]), $"{k} changed");
    }
}

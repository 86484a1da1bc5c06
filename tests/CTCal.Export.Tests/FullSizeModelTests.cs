using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Export.Fixtures;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>
/// Opt-in (<see cref="LargeFactAttribute"/>, CTCAL_EXPORT_LARGE_TESTS=1): a full-size generated SD 2.1 folder (fp16
/// weights, 2.6 GB) opens, exports completely and its text encoder runs finite in ONNX Runtime. Needs ~8 GB of disk.
/// </summary>
public sealed class FullSizeModelTests
{
    [LargeFact]
    public void Generated_sd21_folder_exports_and_its_text_encoder_runs()
    {
        string root = TestModels.NewRoot();
        try
        {
            var model = ReferenceModels.Sd21;
            string folder = RandomModelWriter.Write(model, Path.Combine(root, "sd21"), 1, Path.Combine(TestPaths.Fixtures, "clip-tokenizer"), SafetensorsDType.F16).Folder;
            ModelFolder.Open(folder);
            string onnx = Path.Combine(root, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = folder, OutputFolder = onnx, Fp16 = true });
            var manifest = OnnxModelManifest.TryRead(onnx)!;
            Assert.Equal(ModelFamily.Sd2, manifest.Family);
            Assert.Equal("v_prediction", manifest.PredictionType);
            Assert.Equal(768, manifest.Width);

            int[] ids = Enumerable.Repeat(0, 77).ToArray();
            ids[0] = 49406;
            ids[1] = 320;
            ids[2] = 49407;
            using var text = new OrtRunner(Path.Combine(onnx, "text_encoder", "model.onnx"));
            var hidden = text.Run(("input_ids", ids, [1, 77]))["last_hidden_state"];
            Assert.Equal([1, 77, 1024], hidden.Shape);
            Assert.All(hidden.Data, v => Assert.True(float.IsFinite(v)));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

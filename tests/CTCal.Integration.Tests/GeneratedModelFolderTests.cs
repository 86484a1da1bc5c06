using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Export;
using CTCal.Export.Fixtures;
using CTCal.Tests;
using CTCal.Trainer.Training;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>
/// A folder written by <see cref="RandomModelWriter"/> (the code path of <c>ctcal-export make-model</c>) on scaled-down
/// copies of the full-size configurations loads in the trainer (a strict name-for-name, shape-for-shape load of every
/// component) and exports, and the TorchSharp and ONNX Runtime outputs agree: the writer's tensor names and shapes are
/// what both sides expect.
/// </summary>
public sealed class GeneratedModelFolderTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-generated");

    public void Dispose()
    {
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    [Theory]
    [InlineData("sd15", "fp32")]
    [InlineData("sd21", "fp16")]
    public void Trainer_loads_the_generated_folder_and_agrees_with_its_export(string kind, string dtype)
    {
        var full = ReferenceModels.Get(kind);
        var tiny = full.TextEncoder.HiddenAct == "gelu" ? TinyConfigs.Sd2 : TinyConfigs.Sd1;
        var model = full with
        {
            UnetConfigJson = tiny.UNet,
            VaeConfigJson = tiny.Vae,
            TextEncoderConfigJson = tiny.TextEncoder
                .Replace("\"vocab_size\": 1000", "\"vocab_size\": 49408", StringComparison.Ordinal)
                .Replace("\"max_position_embeddings\": 16", "\"max_position_embeddings\": 77", StringComparison.Ordinal),
        };
        string folder = RandomModelWriter.Write(model, Path.Combine(_root, kind), 11, Path.Combine(TestPaths.Fixtures, "clip-tokenizer"),
            dtype == "fp16" ? SafetensorsDType.F16 : SafetensorsDType.F32).Folder;
        string onnx = Path.Combine(_root, kind + "-onnx");
        OnnxExporter.Export(new ExportOptions { ModelFolder = folder, OutputFolder = onnx });

        using var trainable = DiffusersTrainableModel.Load(folder);
        Assert.Equal(full.Scheduler.PredictionType, trainable.PredictionType);
        using var scope = NewDisposeScope();
        var tokens = trainable.Tokenize("a red cube on a blue sphere");
        int[] ids = tokens.InputIds.Select(i => (int)i).ToArray();
        Assert.Equal(77, ids.Length);
        Assert.Equal(full.SpecialTokensMapJson.Contains("\"pad_token\": \"!\"", StringComparison.Ordinal) ? 0 : 49407, ids[^1]);

        TextConditioning context;
        using (no_grad()) context = trainable.EncodeText(tensor(tokens.InputIds, new long[] { 1, 77 }));
        using (var ort = new Ort(Path.Combine(onnx, "text_encoder", "model.onnx")))
        {
            var hidden = ort.Run(("input_ids", ids, [1, 77]))["last_hidden_state"];
            Compare.Agree("text_encoder last_hidden_state", hidden.Data, hidden.Shape, context.Hidden);
        }

        var sample = randn(new long[] { 1, 4, tiny.LatentHeight, tiny.LatentWidth }, generator: new Generator(3));
        Tensor predicted;
        using (no_grad()) predicted = trainable.PredictNoise(sample, tensor(new long[] { 500 }), context, null, out _);
        Assert.True(Compare.Floats(predicted).All(float.IsFinite));
        using (var ort = new Ort(Path.Combine(onnx, "unet", "model.onnx")))
        {
            var output = ort.Run(("sample", Compare.Floats(sample), sample.shape), ("timestep", new[] { 500f }, [1]),
                ("encoder_hidden_states", Compare.Floats(context.Hidden), context.Hidden.shape))["out_sample"];
            Compare.Agree("unet out_sample", output.Data, output.Shape, predicted);
        }
    }
}

using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Microsoft.ML.OnnxRuntime;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>Inputs are built from each session's InputMetadata, so every exporter convention runs.</summary>
public sealed class OnnxInputAdaptationTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, true);

    [Theory]
    [InlineData(TinySdModel.TimestepKind.Int64Batch)]
    [InlineData(TinySdModel.TimestepKind.Int32Batch)]
    [InlineData(TinySdModel.TimestepKind.FloatOne)]
    [InlineData(TinySdModel.TimestepKind.FloatScalar)]
    public void UnetTimestepFollowsDeclaredTypeAndRank(TinySdModel.TimestepKind kind)
    {
        string model = TinySdModel.Create(_dir, "m", timestep: kind);
        using var session = new InferenceSession(Path.Combine(model, "unet", "model.onnx"));
        const int batch = 2;
        var sample = Enumerable.Range(0, batch * 4 * 2 * 2).Select(i => (float)i).ToArray();
        var text = new float[batch * 77 * TinySdModel.Hidden]; // zeros: mean 0
        string where = "unet";
        using var sampleValue = OnnxTensors.Floats(OnnxTensors.Input(session, "sample", where), sample, new long[] { batch, 4, 2, 2 }, where);
        using var timestep = OnnxTensors.Timestep(OnnxTensors.Input(session, "timestep", where), 500, batch, where);
        using var hidden = OnnxTensors.Floats(OnnxTensors.Input(session, "encoder_hidden_states", where), text, new long[] { batch, 77, TinySdModel.Hidden }, where);

        var expectedShape = kind switch
        {
            TinySdModel.TimestepKind.Int64Batch or TinySdModel.TimestepKind.Int32Batch => new long[] { batch },
            TinySdModel.TimestepKind.FloatOne => new long[] { 1 },
            _ => Array.Empty<long>(),
        };
        Assert.Equal(expectedShape, timestep.GetTensorTypeAndShape().Shape);
        var expectedType = kind switch
        {
            TinySdModel.TimestepKind.Int64Batch => Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64,
            TinySdModel.TimestepKind.Int32Batch => Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int32,
            _ => Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float,
        };
        Assert.Equal(expectedType, timestep.GetTensorTypeAndShape().ElementDataType);

        using var outputs = session.Run(new RunOptions(), new[] { "sample", "timestep", "encoder_hidden_states" }, new[] { sampleValue, timestep, hidden }, new[] { "out_sample" });
        var result = OnnxTensors.ReadFloats(outputs[0], where, out var shape);
        Assert.Equal(new long[] { batch, 4, 2, 2 }, shape);
        for (int i = 0; i < sample.Length; i++)
        {
            Assert.Equal(0.5f * sample[i] + 0.55f, result[i], 4); // + 0.001 * 500 + 0.05 * cos(500 pi)
        }
    }

    [Fact]
    public void Fp16InputsAreFedAsFp16AndFp16OutputsReadBack()
    {
        string model = TinySdModel.Create(_dir, "m", fp16: true);
        using var session = new InferenceSession(Path.Combine(model, "unet", "model.onnx"));
        const int batch = 2;
        // Values exactly representable in fp16 (multiples of 1/8 up to 4).
        var sample = Enumerable.Range(0, batch * 4 * 2 * 2).Select(i => i / 8f).ToArray();
        var text = new float[batch * 77 * TinySdModel.Hidden];
        string where = "unet";
        using var sampleValue = OnnxTensors.Floats(OnnxTensors.Input(session, "sample", where), sample, new long[] { batch, 4, 2, 2 }, where);
        using var timestep = OnnxTensors.Timestep(OnnxTensors.Input(session, "timestep", where), 500, batch, where);
        using var hidden = OnnxTensors.Floats(OnnxTensors.Input(session, "encoder_hidden_states", where), text, new long[] { batch, 77, TinySdModel.Hidden }, where);
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16, sampleValue.GetTensorTypeAndShape().ElementDataType);
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16, hidden.GetTensorTypeAndShape().ElementDataType);

        using var outputs = session.Run(new RunOptions(), new[] { "sample", "timestep", "encoder_hidden_states" }, new[] { sampleValue, timestep, hidden }, new[] { "out_sample" });
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16, outputs[0].GetTensorTypeAndShape().ElementDataType);
        var result = OnnxTensors.ReadFloats(outputs[0], where, out var shape);
        Assert.Equal(new long[] { batch, 4, 2, 2 }, shape);
        // out = 0.5 * sample + 0.001 * 500 + 0.05 * cos(500 pi) = 0.5 * sample + 0.55; 0.55 is not exact in fp16, so the
        // bound is half an fp16 step at 2.5 (2^-10 * 2 / 2).
        for (int i = 0; i < sample.Length; i++)
        {
            Assert.True(Math.Abs(0.5f * sample[i] + 0.55f - result[i]) <= 1e-3, $"element {i}: {result[i]}, expected {0.5f * sample[i] + 0.55f}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TokenIdsFollowDeclaredType(bool int32)
    {
        string model = TinySdModel.Create(_dir, "m", int32Ids: int32);
        using var session = new InferenceSession(Path.Combine(model, "text_encoder", "model.onnx"));
        var meta = OnnxTensors.Input(session, "input_ids", "text_encoder");
        var ids = new int[2 * 77];
        ids[0] = 49406;
        ids[77] = 320;
        using var value = OnnxTensors.TokenIds(meta, ids, 2, "text_encoder");
        Assert.Equal(int32 ? Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int32 : Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64, value.GetTensorTypeAndShape().ElementDataType);
        using var outputs = session.Run(new RunOptions(), new[] { "input_ids" }, new[] { value }, new[] { OnnxTensors.OutputName(session, "last_hidden_state") });
        OnnxTensors.ReadFloats(outputs[0], "text_encoder", out var shape);
        Assert.Equal(new long[] { 2, 77, TinySdModel.Hidden }, shape);
    }

    [Fact]
    public void MissingInputIsNamedWithTheModelFile()
    {
        string model = TinySdModel.Create(_dir, "m");
        using var session = new InferenceSession(Path.Combine(model, "unet", "model.onnx"));
        var ex = Assert.Throws<InvalidDataException>(() => OnnxTensors.Input(session, "added_cond", "unet/model.onnx"));
        Assert.Contains("unet/model.onnx", ex.Message);
        Assert.Contains("added_cond", ex.Message);
    }
}

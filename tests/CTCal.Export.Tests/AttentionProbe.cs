using CTCal.Core.Safetensors;
using CTCal.Export.Onnx.Proto;
using Google.Protobuf;

namespace CTCal.Export.Tests;

/// <summary>
/// Compares an exported UNet's cross-attention probabilities with a fixture's <c>attn_probs_t{t}/...attn2.processor</c>
/// maps. The graph has no attention outputs, so a copy of model.onnx gets each cross-attention's Softmax (the second
/// attention of its transformer block, node "&lt;block&gt;/Softmax_1") as an extra output.
/// </summary>
internal static class AttentionProbe
{
    /// <summary>Runs the probed UNet on the fixture's inputs at <paramref name="t"/>; returns, per recorded key, the max abs error and the head count.</summary>
    public static Dictionary<string, (float Error, long Heads)> Compare(FixtureExport export, int t)
    {
        const string io = "unet_io.safetensors";
        string prefix = $"attn_probs_t{t}/";
        List<string> keys;
        using (var f = SafetensorsFile.Open(Path.Combine(export.Folder, io)))
            keys = f.Tensors.Select(x => x.Name).Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(keys);

        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(export.Model("unet")));
        var probes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string key in keys)
        {
            string block = key[prefix.Length..^".attn2.processor".Length];
            var softmax = model.Graph.Node.Single(n => n.Name == block + "/Softmax_1");
            Assert.Equal("Softmax", softmax.OpType);
            probes[key] = softmax.Output[0];
            model.Graph.Output.Add(new ValueInfoProto
            {
                Name = softmax.Output[0],
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
            });
        }
        string probed = Path.Combine(export.Root, $"unet-probed-t{t}-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(probed, model.ToByteArray());

        var sample = FixtureExport.Read(export.Folder, io, "sample");
        var context = FixtureExport.Read(export.Folder, io, "encoder_hidden_states");
        Dictionary<string, OrtRunner.Tensor> outputs;
        using (var ort = new OrtRunner(probed))
        {
            outputs = ort.Run(("sample", sample.Data, sample.Shape), ("timestep", new float[] { t, t }, [2]),
                ("encoder_hidden_states", context.Data, context.Shape));
        }
        File.Delete(probed);

        var result = new Dictionary<string, (float, long)>(StringComparer.Ordinal);
        foreach (var (key, name) in probes)
        {
            var expected = FixtureExport.Read(export.Folder, io, key); // [B*heads, HW, 77], batch-major then heads
            var actual = outputs[name];                                // [B, heads, HW, 77]
            Assert.Equal(4, actual.Shape.Length);
            Assert.Equal(expected.Shape, new[] { actual.Shape[0] * actual.Shape[1], actual.Shape[2], actual.Shape[3] });
            result[key] = (OrtRunner.MaxAbsDiff(actual.Data, expected.Data), actual.Shape[1]);
        }
        return result;
    }
}

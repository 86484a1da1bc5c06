using CTCal.Export.Graphs;
using CTCal.Export.Onnx;

namespace CTCal.Export.Tests;

/// <summary><see cref="OnnxModelSummary"/> reads what the exported graphs declare, and names a file that is not ONNX.</summary>
public sealed class OnnxModelSummaryTests(TinySd1Export fixture) : IClassFixture<TinySd1Export>
{
    [Fact]
    public void Reads_inputs_outputs_initializers_and_operators_of_an_exported_model()
    {
        var text = OnnxModelSummary.Read(fixture.Model("text_encoder"));
        var ids = Assert.Single(text.Inputs);
        Assert.Equal((TextEncoderGraph.Input, 6), (ids.Name, ids.ElementType)); // int32
        Assert.Equal([new OnnxDimension(null, "batch"), new OnnxDimension(null, "sequence")], ids.Dims);
        var hidden = text.Output(TextEncoderGraph.LastHiddenState)!;
        Assert.Equal(32, hidden.Fixed(2));
        Assert.Null(hidden.Fixed(0));
        Assert.Equal([49408L, 32L], text.Initializers["text_model.embeddings.token_embedding.weight"]);
        Assert.True(text.OpTypes["Sigmoid"] > 0); // quick_gelu
        Assert.False(text.OpTypes.ContainsKey("Erf"));

        var unet = OnnxModelSummary.Read(fixture.Model("unet"));
        Assert.Equal(["sample", "timestep", "encoder_hidden_states"], unet.Inputs.Select(i => i.Name));
        Assert.Equal(4, unet.Input("sample")!.Fixed(1));
        Assert.Equal(32, unet.Input("encoder_hidden_states")!.Fixed(2));
        Assert.Contains("conv_in.weight", unet.Initializers.Keys);
        Assert.NotEmpty(unet.NodeNames);
    }

    [Fact]
    public void A_file_that_is_not_onnx_is_refused_naming_it()
    {
        string path = Path.Combine(fixture.Root, "not-onnx.onnx");
        File.WriteAllBytes(path, [0x3A, 0xFF, 0xFF, 0xFF, 0x0F, 1, 2]); // field 7, length far past the end
        var e = Assert.Throws<InvalidDataException>(() => OnnxModelSummary.Read(path));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }
}

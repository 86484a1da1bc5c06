using System.Text.Json.Nodes;
using CTCal.Export;
using CTCal.Tests;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>A <see cref="TinySD3Pipeline"/> with T5 exported once (all parts, text_encoder_3 included by default).</summary>
public sealed class SD3WithT5Export() : ExportedSD3Pipeline(seed: 61, "ctcal-integration-sd3-t5", withT5: true);

/// <summary>The exported T5 encoder (text_encoder_3) in ONNX Runtime vs TorchSharp's T5EncoderModel.</summary>
public sealed class SD3T5ExportTests(SD3WithT5Export export, Xunit.Abstractions.ITestOutputHelper log) : IClassFixture<SD3WithT5Export>
{
    [Theory]
    [InlineData(2, 9)]    // distances up to 8: the exact and the logarithmic buckets
    [InlineData(1, 30)]   // distances up to 29, past relative_attention_max_distance 12: the clamped last buckets
    public void SD3_t5_last_hidden_state_matches_torch(int batch, int length)
    {
        using var scope = NewDisposeScope();
        var t5 = export.Pipeline.TextEncoder3!;
        var ids = randint(0, t5.Config.VocabSize, new long[] { batch, length }, generator: new Generator(62));
        Tensor expected;
        using (no_grad()) expected = t5.forward(ids);
        using var ort = new Ort(Path.Combine(export.OnnxFolder, "text_encoder_3", "model.onnx"));
        var (data, shape) = ort.Run(("input_ids", Compare.Ints(ids), ids.shape))["last_hidden_state"];
        Compare.Agree($"text_encoder_3 last_hidden_state [{batch}, {length}]", data, shape, expected, log);
    }

    [Fact]
    public void SD3_t5_graph_initializers_are_exactly_the_state_dict_keys()
    {
        var expected = export.Pipeline.TextEncoder3!.state_dict().ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.shape), StringComparer.Ordinal);
        var actual = CTCal.Export.Onnx.OnnxModelSummary.Read(Path.Combine(export.OnnxFolder, "text_encoder_3", "model.onnx")).Initializers
            .Where(kv => !kv.Key.StartsWith("const_", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value), StringComparer.Ordinal);
        Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal), actual.OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void SD3_folder_with_t5_lists_text_encoder_3_and_tokenizer_3()
    {
        string o = export.OnnxFolder;
        Assert.True(File.Exists(Path.Combine(o, "text_encoder_3", "model.onnx")));
        Assert.True(File.Exists(Path.Combine(o, "text_encoder_3", "config.json")));
        Assert.True(File.Exists(Path.Combine(o, "tokenizer_3", "tokenizer_config.json")));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(o, "model_index.json")))!.AsObject();
        Assert.Equal("OnnxRuntimeModel", (string?)index["text_encoder_3"]![1]);
        Assert.Equal("T5TokenizerFast", (string?)index["tokenizer_3"]![1]);
    }

    [Fact]
    public void SD3_export_without_t5_asked_by_name_from_a_folder_without_it_is_refused()
    {
        using var noT5 = new SD3Export();
        string output = Path.Combine(noT5.Pipeline.Root, "onnx-t5");
        var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = noT5.Pipeline.Folder, OutputFolder = output, Components = ExportComponents.TextEncoder3,
        }));
        Assert.Contains(e.Problems, p => p.Contains("text_encoder_3", StringComparison.Ordinal));
        Assert.False(Directory.Exists(output));
    }
}

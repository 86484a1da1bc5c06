using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Export.Graphs;
using CTCal.Export.Onnx.Proto;

namespace CTCal.Export.Tests;

/// <summary>What the written model.onnx holds: initializer names and bytes, opset, symbolic dims; pooling rule of the text encoder.</summary>
public sealed class GraphStructureTests(TinySd1Export export) : IClassFixture<TinySd1Export>
{
    [Fact]
    public void Initializers_are_the_diffusers_state_dict_keys_with_the_source_bytes()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(export.Model("unet")));
        Assert.Equal(17, model.OpsetImport.Single(o => o.Domain == "").Version);
        using var weights = SafetensorsFile.Open(TestModels.UnetWeights);
        var weightInits = model.Graph.Initializer.Where(t => !t.Name.StartsWith("const_", StringComparison.Ordinal)).ToList();
        Assert.Equal(weights.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), weightInits.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var init in weightInits)
        {
            Assert.Equal(weights.GetInfo(init.Name).Shape, init.Dims.ToArray());
            Assert.True(init.RawData.Span.SequenceEqual(weights.GetBytes(init.Name)), $"bytes of {init.Name} differ");
        }
        var sample = model.Graph.Input.Single(i => i.Name == "sample");
        Assert.Equal(["batch", "", "height", "width"], sample.Type.TensorType.Shape.Dim.Select(d => d.DimParam));
        Assert.Equal(4, sample.Type.TensorType.Shape.Dim[1].DimValue);
        Assert.Contains(model.Graph.Initializer, t => t.Name == "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight");
        Assert.Equal(model.Graph.Node.Count, model.Graph.Node.Select(n => n.Name).Distinct().Count());
    }

    [Theory]
    [InlineData("text_encoder")]
    [InlineData("unet")]
    [InlineData("vae_decoder")]
    [InlineData("vae_encoder")]
    public void Every_part_is_ir_version_8_with_opset_17_of_the_default_domain(string part)
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(export.Model(part)));
        Assert.Equal(8, model.IrVersion);
        var opset = Assert.Single(model.OpsetImport);
        Assert.Equal(("", 17L), (opset.Domain, opset.Version));
    }

    [Fact]
    public void Text_encoder_pools_at_the_first_eos_for_non_legacy_configs()
    {
        string root = TestModels.NewRoot();
        try
        {
            // a small CLIP text model whose eos id (7) is not the largest id in the prompt
            string model = Path.Combine(root, "clip");
            Directory.CreateDirectory(Path.Combine(model, "text_encoder"));
            string cfgPath = Path.Combine(model, "text_encoder", "config.json");
            File.WriteAllText(cfgPath, """
                { "vocab_size": 50, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "max_position_embeddings": 12, "hidden_act": "gelu", "eos_token_id": 7, "bos_token_id": 1, "pad_token_id": 0 }
                """);
            var graph = TextEncoderGraph.Build(ClipTextConfig.Load(cfgPath), false);
            TestModels.WriteRandomWeights(Path.Combine(model, "text_encoder", "model.safetensors"), graph.Weights, seed: 11);
            string output = Path.Combine(root, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, Components = ExportComponents.TextEncoder });

            int[] ids = [1, 30, 49, 7, 40, 7, 0, 0, /* second row */ 1, 7, 45, 7, 0, 0, 0, 0];
            using var ort = new OrtRunner(Path.Combine(output, "text_encoder", "model.onnx"));
            var result = ort.Run(("input_ids", ids, [2, 8]));
            var last = result["last_hidden_state"];
            var pooled = result["pooler_output"];
            Assert.Equal([2, 8, 16], last.Shape);
            Assert.Equal(pooled.Data.AsSpan(0, 16).ToArray(), last.Data.AsSpan(3 * 16, 16).ToArray());      // row 0: first 7 at 3
            Assert.Equal(pooled.Data.AsSpan(16, 16).ToArray(), last.Data.AsSpan((8 + 1) * 16, 16).ToArray()); // row 1: first 7 at 1

            // causal: changing a later token leaves earlier positions unchanged
            int[] changed = (int[])ids.Clone();
            changed[5] = 20;
            var last2 = ort.Run(("input_ids", changed, [2, 8]))["last_hidden_state"];
            Assert.Equal(last.Data.AsSpan(0, 5 * 16).ToArray(), last2.Data.AsSpan(0, 5 * 16).ToArray());
            Assert.NotEqual(last.Data.AsSpan(5 * 16, 16).ToArray(), last2.Data.AsSpan(5 * 16, 16).ToArray());
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Text_encoder_lora_matches_a_manually_merged_text_encoder()
    {
        string root = TestModels.NewRoot();
        try
        {
            const string module = "text_model.encoder.layers.1.self_attn.q_proj";
            var rng = new Random(4);
            float[] a = Enumerable.Range(0, 2 * 32).Select(_ => 4 * rng.NextSingle() - 2f).ToArray();
            float[] b = Enumerable.Range(0, 32 * 2).Select(_ => 4 * rng.NextSingle() - 2f).ToArray();
            string lora = Path.Combine(root, "te.safetensors");
            SafetensorsWriter.Write(lora,
            [
                SafetensorsWriteEntry.FromFloat32($"text_encoder.{module}.lora_A.weight", [2, 32], a),
                SafetensorsWriteEntry.FromFloat32($"text_encoder.{module}.lora_B.weight", [32, 2], b),
            ]);
            string merged = TestModels.CopyTinySd1(root);
            string teFile = Path.Combine(merged, "text_encoder", "model.safetensors");
            string original = Path.Combine(TinySd1Export.ModelFolder, "text_encoder", "model.safetensors");
            File.Delete(teFile);
            TestModels.Rewrite(original, teFile, (name, shape, data) =>
            {
                if (name != module + ".weight") return (shape, data);
                for (int o = 0; o < 32; o++)
                for (int i = 0; i < 32; i++)
                    data[o * 32 + i] = (float)(data[o * 32 + i] + 0.5 * (b[o * 2] * (double)a[i] + b[o * 2 + 1] * (double)a[32 + i]));
                return (shape, data);
            });
            string viaLora = Path.Combine(root, "a");
            string viaMerged = Path.Combine(root, "b");
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = viaLora, Components = ExportComponents.TextEncoder, Loras = [new LoraSpec(lora, 0.5f)] });
            OnnxExporter.Export(new ExportOptions { ModelFolder = merged, OutputFolder = viaMerged, Components = ExportComponents.TextEncoder });
            var ids = TinySd1Export.ReadIds("text_encoder_io.safetensors", "input_ids");
            using var ra = new OrtRunner(Path.Combine(viaLora, "text_encoder", "model.onnx"));
            using var rb = new OrtRunner(Path.Combine(viaMerged, "text_encoder", "model.onnx"));
            using var rc = new OrtRunner(export.Model("text_encoder"));
            float[] outA = ra.Run(("input_ids", ids.Data, ids.Shape))["last_hidden_state"].Data;
            float[] outB = rb.Run(("input_ids", ids.Data, ids.Shape))["last_hidden_state"].Data;
            float[] outC = rc.Run(("input_ids", ids.Data, ids.Shape))["last_hidden_state"].Data;
            float same = OrtRunner.MaxAbsDiff(outA, outB);
            float effect = OrtRunner.MaxAbsDiff(outA, outC);
            Assert.True(same <= 1e-6f, $"LoRA export differs from the merged export by {same}");
            Assert.True(effect >= 1e-3f, $"LoRA changed the output by only {effect}");
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

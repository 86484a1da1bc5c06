using CTCal.Core.Safetensors;

namespace CTCal.Export.Tests;

/// <summary>LoRA merged at export equals exporting a weight file merged by hand (W' = W + scale * alpha / rank * B @ A).</summary>
public sealed class LoraMergeTests
{
    private const string Attn2Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q";
    private const string MidAttn1V = "mid_block.attentions.0.transformer_blocks.0.attn1.to_v";
    private const string ProjIn = "up_blocks.1.attentions.0.proj_in"; // 1x1 conv [32, 32, 1, 1]

    private sealed record Module(string Name, long Out, long In, int Rank, float? Alpha, bool PeftNames, float[] A, float[] B);

    private static Module Make(string name, long outF, long inF, int rank, float? alpha, bool peft, int seed)
    {
        var rng = new Random(seed);
        float[] a = Enumerable.Range(0, (int)(rank * inF)).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        float[] b = Enumerable.Range(0, (int)(outF * rank)).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        return new Module(name, outF, inF, rank, alpha, peft, a, b);
    }

    [Fact]
    public void Lora_changes_outputs_exactly_as_a_manually_merged_unet()
    {
        string root = TestModels.NewRoot();
        try
        {
            const float scale = 0.75f;
            Module[] modules =
            [
                Make(Attn2Q, 32, 32, 4, 2f, peft: true, seed: 1),
                Make(MidAttn1V, 64, 64, 2, null, peft: false, seed: 2),
                Make(ProjIn, 32, 32, 3, 6f, peft: true, seed: 3),
            ];
            var entries = new List<SafetensorsWriteEntry>();
            foreach (var m in modules)
            {
                bool conv = m.Name.EndsWith("proj_in", StringComparison.Ordinal);
                long[] aShape = conv ? [m.Rank, m.In, 1, 1] : [m.Rank, m.In];
                long[] bShape = conv ? [m.Out, m.Rank, 1, 1] : [m.Out, m.Rank];
                string down = m.PeftNames ? $"unet.{m.Name}.lora_A.weight" : $"{m.Name}.lora.down.weight";
                string up = m.PeftNames ? $"unet.{m.Name}.lora_B.weight" : $"{m.Name}.lora.up.weight";
                entries.Add(SafetensorsWriteEntry.FromFloat32(down, aShape, m.A));
                entries.Add(SafetensorsWriteEntry.FromFloat32(up, bShape, m.B));
                if (m.Alpha is { } alpha)
                    entries.Add(SafetensorsWriteEntry.FromFloat32((m.PeftNames ? "unet." : "") + m.Name + ".alpha", [], [alpha]));
            }
            string lora = Path.Combine(root, "lora.safetensors");
            // modules without an alpha tensor take alpha from the file metadata (as the trainer writes it)
            const float fileAlpha = 3f;
            SafetensorsWriter.Write(lora, entries, new Dictionary<string, string> { ["ctcal.lora_alpha"] = "3" });

            // the same update computed independently (double accumulation) into a full UNet file
            string merged = Path.Combine(root, "merged.safetensors");
            TestModels.Rewrite(TestModels.UnetWeights, merged, (name, shape, data) =>
            {
                var m = modules.FirstOrDefault(x => x.Name + ".weight" == name);
                if (m is null) return (shape, data);
                double factor = scale * (m.Alpha ?? fileAlpha) / m.Rank;
                for (long o = 0; o < m.Out; o++)
                for (long i = 0; i < m.In; i++)
                {
                    double sum = 0;
                    for (int r = 0; r < m.Rank; r++) sum += m.B[o * m.Rank + r] * (double)m.A[r * m.In + i];
                    data[o * m.In + i] = (float)(data[o * m.In + i] + factor * sum);
                }
                return (shape, data);
            });

            string viaLora = Path.Combine(root, "via-lora");
            string viaMerged = Path.Combine(root, "via-merged");
            string baseOut = Path.Combine(root, "base");
            OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = viaLora, Components = ExportComponents.Unet,
                Loras = [LoraSpec.Parse($"{lora}:{scale}")],
            });
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = viaMerged, Components = ExportComponents.Unet, UnetWeights = merged });
            OnnxExporter.Export(new ExportOptions { ModelFolder = TinySd1Export.ModelFolder, OutputFolder = baseOut, Components = ExportComponents.Unet });

            float[] a = TestModels.RunUnet(viaLora);
            float[] b = TestModels.RunUnet(viaMerged);
            float[] c = TestModels.RunUnet(baseOut);
            float same = OrtRunner.MaxAbsDiff(a, b);
            float effect = OrtRunner.MaxAbsDiff(a, c);
            Assert.True(same <= 1e-6f, $"LoRA export differs from the merged-weights export by {same}");
            Assert.True(effect >= 1e-3f, $"LoRA changed the output by only {effect}");
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Lora_for_a_module_the_model_lacks_is_named_and_nothing_is_written()
    {
        string root = TestModels.NewRoot();
        try
        {
            string lora = Path.Combine(root, "lora.safetensors");
            SafetensorsWriter.Write(lora,
            [
                SafetensorsWriteEntry.FromFloat32("unet.down_blocks.7.attentions.0.transformer_blocks.0.attn2.to_q.lora_A.weight", [2, 32], new float[64]),
                SafetensorsWriteEntry.FromFloat32("unet.down_blocks.7.attentions.0.transformer_blocks.0.attn2.to_q.lora_B.weight", [32, 2], new float[64]),
            ]);
            string output = Path.Combine(root, "out");
            var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet, Loras = [new LoraSpec(lora)],
            }));
            Assert.Contains("down_blocks.7.attentions.0.transformer_blocks.0.attn2.to_q", e.Message);
            Assert.False(Directory.Exists(output));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Alpha_comes_from_the_peft_config_metadata_when_no_tensor_holds_it()
    {
        string root = TestModels.NewRoot();
        try
        {
            string lora = Path.Combine(root, "peft.safetensors");
            SafetensorsWriter.Write(lora,
            [
                SafetensorsWriteEntry.FromFloat32("unet.a.to_q.lora_A.weight", [4, 8], new float[32]),
                SafetensorsWriteEntry.FromFloat32("unet.a.to_q.lora_B.weight", [8, 4], new float[32]),
                SafetensorsWriteEntry.FromFloat32("text_encoder.b.q_proj.lora_A.weight", [4, 8], new float[32]),
                SafetensorsWriteEntry.FromFloat32("text_encoder.b.q_proj.lora_B.weight", [8, 4], new float[32]),
                SafetensorsWriteEntry.FromFloat32("text_encoder.b.q_proj.alpha", [], [2f]),
            ], new Dictionary<string, string> { ["lora_adapter_metadata"] = """{"r": 4, "lora_alpha": 16}""" });
            var loaded = Weights.LoraFile.Load(lora, 0.5f);
            Assert.Equal(0.5f * 16 / 4, loaded["unet"]["a.to_q.weight"].Single().Factor);
            Assert.Equal(0.5f * 2 / 4, loaded["text_encoder"]["b.q_proj.weight"].Single().Factor);
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Theory]
    [InlineData("a/b.safetensors:0.5", "a/b.safetensors", 0.5f)]
    [InlineData("a/b.safetensors", "a/b.safetensors", 1f)]
    [InlineData(@"C:\x\b.safetensors", @"C:\x\b.safetensors", 1f)]
    [InlineData(@"C:\x\b.safetensors:-1", @"C:\x\b.safetensors", -1f)]
    public void Lora_spec_parses_path_and_optional_scale(string text, string path, float scale)
    {
        var spec = LoraSpec.Parse(text);
        Assert.Equal(path, spec.Path);
        Assert.Equal(scale, spec.Scale);
    }
}

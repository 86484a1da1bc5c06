using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Export.Onnx.Proto;

namespace CTCal.Export.Tests;

/// <summary>
/// The same LoRA spelled the kohya way and the peft way merges to the same exported weights; per-module alpha tensors
/// scale each module by alpha / rank; a kohya module name the model lacks is refused naming the key.
/// </summary>
public sealed class LoraSpellingTests
{
    private sealed record Module(string Component, string Path, long Out, long In, int Rank, float Alpha, float[] A, float[] B);

    /// <summary>Every UNet attention projection of tiny-sd1 and the text encoder's q_proj, with seeded random A, B and alpha.</summary>
    private static List<Module> Modules()
    {
        var rng = new Random(13);
        var modules = new List<Module>();
        foreach (var (component, file) in new[]
        {
            (LoraKeys.UNet, TestModels.UnetWeights),
            (LoraKeys.TextEncoder, Path.Combine(TinySd1Export.ModelFolder, "text_encoder", "model.safetensors")),
        })
        {
            using var weights = SafetensorsFile.Open(file);
            foreach (var t in weights.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                bool take = component == LoraKeys.UNet
                    ? t.Name.Contains(".attn", StringComparison.Ordinal) && t.Name.EndsWith(".weight", StringComparison.Ordinal) && t.Shape.Length == 2
                    : t.Name.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal);
                if (!take) continue;
                int rank = 1 + rng.Next(3);
                long outF = t.Shape[0], inF = t.Shape[1];
                float[] a = Enumerable.Range(0, (int)(rank * inF)).Select(_ => rng.NextSingle() - 0.5f).ToArray();
                float[] b = Enumerable.Range(0, (int)(outF * rank)).Select(_ => rng.NextSingle() - 0.5f).ToArray();
                modules.Add(new Module(component, t.Name[..^".weight".Length], outF, inF, rank, 0.5f + rng.Next(8), a, b));
            }
        }
        Assert.Contains(modules, m => m.Component == LoraKeys.TextEncoder);
        Assert.True(modules.Count(m => m.Component == LoraKeys.UNet) >= 24);
        return modules;
    }

    private static void WriteLora(string path, IEnumerable<Module> modules, LoraSpelling spelling)
    {
        var entries = new List<SafetensorsWriteEntry>();
        foreach (var m in modules)
        {
            entries.Add(SafetensorsWriteEntry.FromFloat32(LoraKeys.Format(m.Component, m.Path, LoraPart.Down, spelling), [m.Rank, m.In], m.A));
            entries.Add(SafetensorsWriteEntry.FromFloat32(LoraKeys.Format(m.Component, m.Path, LoraPart.Up, spelling), [m.Out, m.Rank], m.B));
            entries.Add(SafetensorsWriteEntry.FromFloat32(LoraKeys.Format(m.Component, m.Path, LoraPart.Alpha, spelling), [], [m.Alpha]));
        }
        SafetensorsWriter.Write(path, entries);
    }

    private static string Export(string root, string name, string? lora)
    {
        string output = Path.Combine(root, name);
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet | ExportComponents.TextEncoder,
            Loras = lora is null ? [] : [new LoraSpec(lora, 0.8f)],
        });
        return output;
    }

    private static Dictionary<string, TensorProto> Initializers(string output, string component) =>
        ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(output, component, "model.onnx"))).Graph.Initializer
            .Where(t => !t.Name.StartsWith("const_", StringComparison.Ordinal)).ToDictionary(t => t.Name, StringComparer.Ordinal);

    [Fact]
    public void Kohya_lora_merges_at_export_exactly_as_the_same_lora_in_peft_names()
    {
        string root = TestModels.NewRoot();
        try
        {
            var modules = Modules();
            string peft = Path.Combine(root, "peft.safetensors");
            string kohya = Path.Combine(root, "kohya.safetensors");
            WriteLora(peft, modules, LoraSpelling.Peft);
            WriteLora(kohya, modules, LoraSpelling.Kohya);
            using (var k = SafetensorsFile.Open(kohya))
                Assert.All(k.Tensors, t => Assert.StartsWith("lora_", t.Name));

            string viaPeft = Export(root, "peft", peft);
            string viaKohya = Export(root, "kohya", kohya);
            string baseOut = Export(root, "base", null);
            foreach (string component in new[] { "unet", "text_encoder" })
            {
                var p = Initializers(viaPeft, component);
                var k = Initializers(viaKohya, component);
                var b = Initializers(baseOut, component);
                Assert.Equal(p.Keys.Order(StringComparer.Ordinal), k.Keys.Order(StringComparer.Ordinal));
                foreach (var (name, init) in p)
                    Assert.True(init.RawData.Span.SequenceEqual(k[name].RawData.Span), $"{component} initializer {name}: kohya and peft exports differ");
                // every LoRA module changed its weight; nothing else did
                foreach (var (name, init) in p)
                {
                    bool updated = modules.Any(m => (component == "unet" ? LoraKeys.UNet : LoraKeys.TextEncoder) == m.Component && m.Path + ".weight" == name);
                    Assert.True(updated != init.RawData.Span.SequenceEqual(b[name].RawData.Span), $"{component} {name}: updated={updated}");
                }
            }
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Kohya_per_module_alpha_scales_each_module_by_alpha_over_rank()
    {
        string root = TestModels.NewRoot();
        try
        {
            var modules = Modules();
            string kohya = Path.Combine(root, "kohya.safetensors");
            WriteLora(kohya, modules, LoraSpelling.Kohya);
            string viaKohya = Export(root, "kohya", kohya);
            foreach (string component in new[] { "unet", "text_encoder" })
            {
                var inits = Initializers(viaKohya, component);
                using var source = SafetensorsFile.Open(component == "unet" ? TestModels.UnetWeights
                    : Path.Combine(TinySd1Export.ModelFolder, "text_encoder", "model.safetensors"));
                foreach (var m in modules.Where(m => m.Component == component))
                {
                    float[] w = source.ReadAsFloat32(m.Path + ".weight");
                    float[] got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(inits[m.Path + ".weight"].RawData.Span).ToArray();
                    double factor = 0.8 * m.Alpha / m.Rank;
                    double worst = 0;
                    for (long o = 0; o < m.Out; o++)
                    for (long i = 0; i < m.In; i++)
                    {
                        double sum = 0;
                        for (int r = 0; r < m.Rank; r++) sum += m.B[o * m.Rank + r] * (double)m.A[r * m.In + i];
                        worst = Math.Max(worst, Math.Abs(got[o * m.In + i] - (w[o * m.In + i] + factor * sum)));
                    }
                    Assert.True(worst <= 1e-6, $"{component} {m.Path} (rank {m.Rank}, alpha {m.Alpha}): off by {worst}");
                }
            }
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }

    [Fact]
    public void Unknown_kohya_module_name_is_refused_naming_the_key_and_nothing_is_written()
    {
        string root = TestModels.NewRoot();
        try
        {
            const string down = "lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn2_to_q.lora_down.weight";
            string lora = Path.Combine(root, "kohya.safetensors");
            SafetensorsWriter.Write(lora,
            [
                SafetensorsWriteEntry.FromFloat32(down, [2, 32], new float[64]),
                SafetensorsWriteEntry.FromFloat32("lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn2_to_q.lora_up.weight", [32, 2], new float[64]),
            ]);
            string output = Path.Combine(root, "out");
            var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
            {
                ModelFolder = TinySd1Export.ModelFolder, OutputFolder = output, Components = ExportComponents.Unet, Loras = [new LoraSpec(lora)],
            }));
            Assert.Contains(down, e.Message);
            Assert.False(Directory.Exists(output));
        }
        finally
        {
            TestModels.DeleteQuietly(root);
        }
    }
}

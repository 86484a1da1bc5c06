using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>The one reader of LoRA files: both key spellings give the same modules; every problem is named.</summary>
public sealed class LoraFileLayoutTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-lora-layout");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] UNetWeights =
    [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    ];

    private string Write(string name, IEnumerable<(string Key, long[] Shape)> tensors, Dictionary<string, string>? metadata = null)
    {
        string path = Path.Combine(_dir, name);
        SafetensorsWriter.Write(path, tensors.Select(t => new SafetensorsWriteEntry(t.Key, SafetensorsDType.F32, t.Shape, s =>
        {
            long n = t.Shape.Aggregate(1L, (a, b) => a * b);
            for (long i = 0; i < n; i++) s.Write(BitConverter.GetBytes(t.Shape.Length == 0 ? 2f : 0.5f));
        })).ToList(), metadata);
        return path;
    }

    private static LoraFileLayout Read(string path, Func<string, IEnumerable<string>>? names = null)
    {
        using var file = SafetensorsFile.Open(path);
        return LoraFileLayout.Read(file, path, names);
    }

    private static IEnumerable<(string, long[])> Modules(LoraSpelling spelling, bool alphaTensors = false) =>
        UNetWeights.Select(w => w[..^".weight".Length]).SelectMany(m => new (string, long[])[]
        {
            (LoraKeys.Format(LoraKeys.UNet, m, LoraPart.Down, spelling), [4, 8]),
            (LoraKeys.Format(LoraKeys.UNet, m, LoraPart.Up, spelling), [16, 4]),
        }.Concat(alphaTensors ? [(LoraKeys.Format(LoraKeys.UNet, m, LoraPart.Alpha, spelling), Array.Empty<long>())] : []));

    [Fact]
    public void PeftAndKohyaSpellingsReadAsTheSameModules()
    {
        var peft = Read(Write("peft.safetensors", Modules(LoraSpelling.Peft), LoraFileLayout.Metadata(4, 2, 0, ["to_q", "to_k"])));
        var kohya = Read(Write("kohya.safetensors", Modules(LoraSpelling.Kohya, alphaTensors: true)), _ => UNetWeights);
        Assert.Empty(peft.Problems);
        Assert.Empty(kohya.Problems);
        Assert.Equal(peft.Modules.Select(m => (m.Component, m.Module, m.Rank, m.OutFeatures, m.InFeatures, m.EffectiveAlpha(peft.MetadataAlpha))),
            kohya.Modules.Select(m => (m.Component, m.Module, m.Rank, m.OutFeatures, m.InFeatures, m.EffectiveAlpha(kohya.MetadataAlpha))));
        Assert.Equal(2.0, peft.MetadataAlpha);
        Assert.All(kohya.Modules, m => Assert.Equal(2.0, m.Alpha)); // the per-module alpha tensor
        Assert.Equal((4, 16L, 8L), (peft.Modules[0].Rank, peft.Modules[0].OutFeatures, peft.Modules[0].InFeatures));
    }

    [Fact]
    public void WithoutAlphaTheRankIsTheAlpha()
    {
        var layout = Read(Write("plain.safetensors", Modules(LoraSpelling.Peft)));
        Assert.Null(layout.MetadataAlpha);
        Assert.All(layout.Modules, m => Assert.Equal(4.0, m.EffectiveAlpha(layout.MetadataAlpha)));
    }

    [Fact]
    public void EveryProblemIsNamed()
    {
        string m = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
        var layout = Read(Write("bad.safetensors",
        [
            ($"unet.{m}.lora_A.weight", [4, 8]),
            ($"unet.{m}.lora_B.weight", [16, 3]),                // not a rank-4 product
            ("unet.x.lora_A.weight", [4, 8]),                     // no up tensor
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight", [4, 8]),
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight", [16, 4]), // kohya without names
            ("model.diffusion.weight", [2]),                      // not a LoRA key
        ], new() { [LoraFileLayout.AlphaMetadataKey] = "many" }));
        Assert.Empty(layout.Modules);
        string[] expected =
        [
            "metadata 'ctcal.lora_alpha' = 'many' is not a number",
            $"module '{m}': lora down [4,8] and up [16,3] do not form a rank-r product",
            "module 'x' has no up/lora_B tensor",
            "weight names are needed",
            "'model.diffusion.weight'",
        ];
        foreach (string e in expected) Assert.Contains(layout.Problems, p => p.StartsWith(Path.Combine(_dir, "bad.safetensors") + ": ", StringComparison.Ordinal) && p.Contains(e, StringComparison.Ordinal));
        Assert.Equal(expected.Length, layout.Problems.Count);
    }

    [Fact]
    public void ANonPositiveAlphaAndAnEmptyFileAreRefused()
    {
        var negative = Read(Write("neg.safetensors", Modules(LoraSpelling.Peft), LoraFileLayout.Metadata(4, -1, 0, ["to_q"])));
        Assert.Contains(negative.Problems, p => p.Contains("has LoRA alpha -1, not a positive number"));
        var empty = Read(Write("empty.safetensors", []));
        Assert.Contains(empty.Problems, p => p.Contains("not a LoRA file"));
    }
}

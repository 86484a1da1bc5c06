using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Weights;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>One way to read a component's tensors by name: plain files, variants, shards with an index, bf16/fp16 data.</summary>
public sealed class TensorSourceTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(SafetensorsDType.F32, null, 1)]
    [InlineData(SafetensorsDType.F16, "fp16", 1)]
    [InlineData(SafetensorsDType.BF16, null, 3)]
    [InlineData(SafetensorsDType.F16, "fp16", 2)]
    public void Variant_and_sharded_folders_give_the_same_tensors_as_the_plain_folder(SafetensorsDType dtype, string? variant, int shards)
    {
        string folder = TestWeightFolders.Copy(TestWeightFolders.TinySd1, Path.Combine(_dir, "m"), dtype, variant, shards);
        var layout = ModelFolder.Open(folder, variant: variant);
        if (shards > 1) Assert.EndsWith(".safetensors.index.json", layout.Unet.WeightsPath, StringComparison.Ordinal);
        if (variant is not null) Assert.Contains($".{variant}.", Path.GetFileName(layout.Unet.WeightsPath), StringComparison.Ordinal);
        foreach (string component in TestWeightFolders.Components)
        {
            using var plain = TensorSource.OpenComponent(Path.Combine(TestWeightFolders.TinySd1, component));
            using var other = TensorSource.Open(component switch
            {
                "unet" => layout.Unet.WeightsPath,
                "vae" => layout.Vae.WeightsPath,
                _ => layout.TextEncoder.WeightsPath,
            });
            Assert.Equal(plain.Tensors.Count, other.Tensors.Count);
            float tolerance = dtype == SafetensorsDType.F32 ? 0f : dtype == SafetensorsDType.F16 ? 1e-3f : 8e-3f;
            foreach (var t in plain.Tensors)
            {
                Assert.Equal(dtype, other.GetInfo(t.Name).DType);
                float[] a = plain.ReadAsFloat32(t.Name), b = other.ReadAsFloat32(t.Name);
                for (int i = 0; i < a.Length; i++)
                    Assert.True(Math.Abs(a[i] - b[i]) <= tolerance * Math.Max(1f, Math.Abs(a[i])), $"{component} {t.Name}[{i}]: {a[i]} vs {b[i]}");
            }
        }
    }

    [Fact]
    public void Bf16_conversion_rounds_to_nearest_even_and_widens_exactly()
    {
        float[] values = [1f, -2.5f, 3.14159f, 1e-20f, 65504f, 1.00390625f /* halfway: rounds to even (1.0) */, 1.01171875f /* halfway: up */];
        string path = Path.Combine(_dir, "bf16.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromFloat32As("x", SafetensorsDType.BF16, [values.Length], values)]);
        using var source = TensorSource.Open(path);
        float[] back = source.ReadAsFloat32("x");
        Assert.Equal(1f, back[0]);
        Assert.Equal(-2.5f, back[1]);
        Assert.Equal(3.140625f, back[2]);
        Assert.Equal(1f, back[5]);
        Assert.Equal(1.015625f, back[6]);
    }

    [Fact]
    public void A_tensor_in_two_shards_and_a_bad_index_are_errors_naming_the_file()
    {
        string folder = Path.Combine(_dir, "c");
        Directory.CreateDirectory(folder);
        SafetensorsWriter.Write(Path.Combine(folder, "a.safetensors"), [SafetensorsWriteEntry.FromFloat32("w", [1], [1f])]);
        SafetensorsWriter.Write(Path.Combine(folder, "b.safetensors"), [SafetensorsWriteEntry.FromFloat32("w", [1], [2f])]);
        string index = Path.Combine(folder, "model.safetensors.index.json");
        File.WriteAllText(index, """{"weight_map": {"w": "a.safetensors", "v": "b.safetensors"}}""");
        var e = Assert.Throws<SafetensorsException>(() => TensorSource.Open(index));
        Assert.Contains("'w'", e.Message);
        File.WriteAllText(index, """{"weight_map": {"w": "../outside.safetensors"}}""");
        Assert.ThrowsAny<Exception>(() => TensorSource.Open(index));
        File.WriteAllText(index, "{");
        var bad = Assert.Throws<ModelFolderException>(() => TensorSource.Open(index));
        Assert.Contains(index, bad.Message);
        Assert.Throws<ModelFolderException>(() => TensorSource.Open(Path.Combine(folder, "model.ckpt")));
    }
}

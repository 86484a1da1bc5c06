using CTCal.Core.Safetensors;
using CTCal.Export.Onnx;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>Helpers that make small model folders and weight files for the export tests.</summary>
internal static class TestModels
{
    /// <summary>Writes seeded random fp32 weights for every requirement (values ~ U(-a, a), a = 1/sqrt(fan_in); norms near 1).</summary>
    public static void WriteRandomWeights(string path, IEnumerable<WeightRequirement> required, int seed)
    {
        var rng = new Random(seed);
        var entries = required.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r =>
        {
            long count = r.Shape.Aggregate(1L, (a, b) => a * b);
            bool norm = r.Name.Contains("norm", StringComparison.Ordinal);
            float bound = r.Shape.Length >= 2 ? 1f / MathF.Sqrt(count / r.Shape[0]) : 0.1f;
            var data = new float[count];
            for (int i = 0; i < data.Length; i++)
                data[i] = (norm && r.Name.EndsWith(".weight", StringComparison.Ordinal) ? 1f : 0f) + bound * (2f * rng.NextSingle() - 1f);
            return SafetensorsWriteEntry.FromFloat32(r.Name, r.Shape, data);
        }).ToList();
        SafetensorsWriter.Write(path, entries);
    }

    /// <summary>Rewrites a safetensors file through <paramref name="edit"/> (name, shape, data) -> entry or null to drop it.</summary>
    public static void Rewrite(string from, string to, Func<string, long[], float[], (long[] Shape, float[] Data)?> edit)
    {
        using var src = SafetensorsFile.Open(from);
        var entries = new List<SafetensorsWriteEntry>();
        foreach (var t in src.Tensors)
        {
            var r = edit(t.Name, t.Shape, src.ReadAsFloat32(t.Name));
            if (r is { } e) entries.Add(SafetensorsWriteEntry.FromFloat32(t.Name, e.Shape, e.Data));
        }
        SafetensorsWriter.Write(to, entries);
    }

    /// <summary>A copy of tiny-sd1 in a temp folder (for tests that edit configs).</summary>
    public static string CopyTinySd1(string root)
    {
        string dst = Path.Combine(root, "model");
        foreach (string file in Directory.EnumerateFiles(TinySd1Export.ModelFolder, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(TinySd1Export.ModelFolder, file);
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(dst, rel))!);
            File.Copy(file, Path.Combine(dst, rel));
        }
        return dst;
    }

    public static string UnetWeights => Path.Combine(TinySd1Export.ModelFolder, "unet", "diffusion_pytorch_model.safetensors");

    /// <summary>Runs an exported UNet on the fixture inputs at timestep t.</summary>
    public static float[] RunUnet(string onnxFolder, float t = 500f)
    {
        var sample = TinySd1Export.Read("unet_io.safetensors", "sample");
        var context = TinySd1Export.Read("unet_io.safetensors", "encoder_hidden_states");
        using var ort = new OrtRunner(Path.Combine(onnxFolder, "unet", "model.onnx"));
        return ort.Run(("sample", sample.Data, sample.Shape), ("timestep", new[] { t, t }, [2]),
            ("encoder_hidden_states", context.Data, context.Shape))["out_sample"].Data;
    }

    public static void DeleteQuietly(string dir)
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    public static string NewRoot() => TestPaths.NewTempDir("ctcal-export");
}

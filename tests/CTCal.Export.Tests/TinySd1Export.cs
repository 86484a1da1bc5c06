using CTCal.Core.Safetensors;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>A reference fixture folder (tests/data/fixtures/<c>name</c>) exported once (fp32, all components) and shared by a test class.</summary>
public abstract class FixtureExport : IDisposable
{
    protected FixtureExport(string fixture)
    {
        Folder = Path.Combine(TestPaths.Fixtures, fixture);
        Root = TestPaths.NewTempDir("ctcal-export");
        Output = Path.Combine(Root, "onnx");
        OnnxExporter.Export(new ExportOptions { ModelFolder = Folder, OutputFolder = Output });
    }

    /// <summary>The exported diffusers folder.</summary>
    public string Folder { get; }

    public string Root { get; }

    public string Output { get; }

    public string Model(string component) => Path.Combine(Output, component, "model.onnx");

    /// <summary>A float tensor of one of <paramref name="folder"/>'s recorded io files.</summary>
    internal static (float[] Data, long[] Shape) Read(string folder, string file, string tensor)
    {
        using var f = SafetensorsFile.Open(Path.Combine(folder, file));
        return (f.ReadAsFloat32(tensor), f.GetInfo(tensor).Shape);
    }

    /// <summary>An int64 id tensor of one of <paramref name="folder"/>'s recorded io files, as int32 (the text encoder's input type).</summary>
    internal static (int[] Data, long[] Shape) ReadIds(string folder, string file, string tensor)
    {
        using var f = SafetensorsFile.Open(Path.Combine(folder, file));
        var info = f.GetInfo(tensor);
        var bytes = f.GetBytes(tensor);
        var ids = new int[info.ElementCount];
        for (int i = 0; i < ids.Length; i++) ids[i] = checked((int)BitConverter.ToInt64(bytes.Slice(i * 8, 8)));
        return (ids, info.Shape);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

/// <summary>The tiny-sd1 fixture exported once (fp32, all components) and shared by the parity tests.</summary>
public sealed class TinySd1Export() : FixtureExport("tiny-sd1")
{
    public static string ModelFolder => Path.Combine(TestPaths.Fixtures, "tiny-sd1");

    internal static (float[] Data, long[] Shape) Read(string file, string tensor) => Read(ModelFolder, file, tensor);

    internal static (int[] Data, long[] Shape) ReadIds(string file, string tensor) => ReadIds(ModelFolder, file, tensor);
}

/// <summary>The tiny-sd2-style fixture (linear projections, per-block heads, upcast attention, gelu CLIP) exported once.</summary>
public sealed class TinySd2StyleExport() : FixtureExport("tiny-sd2-style");

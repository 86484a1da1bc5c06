using CTCal.Core.Safetensors;
using CTCal.Tests;

namespace CTCal.Export.Tests;

/// <summary>The tiny-sd1 fixture exported once (fp32, all components) and shared by the parity tests.</summary>
public sealed class TinySd1Export : IDisposable
{
    public static string ModelFolder => Path.Combine(TestPaths.Fixtures, "tiny-sd1");

    public TinySd1Export()
    {
        Root = TestPaths.NewTempDir("ctcal-export");
        Output = Path.Combine(Root, "onnx");
        OnnxExporter.Export(new ExportOptions { ModelFolder = ModelFolder, OutputFolder = Output });
    }

    public string Root { get; }

    public string Output { get; }

    public string Model(string component) => Path.Combine(Output, component, "model.onnx");

    internal static (float[] Data, long[] Shape) Read(string file, string tensor)
    {
        using var f = SafetensorsFile.Open(Path.Combine(ModelFolder, file));
        return (f.ReadAsFloat32(tensor), f.GetInfo(tensor).Shape);
    }

    internal static (int[] Data, long[] Shape) ReadIds(string file, string tensor)
    {
        using var f = SafetensorsFile.Open(Path.Combine(ModelFolder, file));
        var info = f.GetInfo(tensor);
        var bytes = f.GetBytes(tensor);
        var ids = new int[info.ElementCount];
        for (int i = 0; i < ids.Length; i++) ids[i] = checked((int)BitConverter.ToInt64(bytes.Slice(i * 8, 8)));
        return (ids, info.Shape);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, true); } catch (IOException) { }
    }
}

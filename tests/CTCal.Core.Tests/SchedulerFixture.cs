using System.Buffers.Binary;
using System.Text.Json;

namespace CTCal.Core.Tests;

/// <summary>
/// tests/data/fixtures/schedulers.json + .safetensors (diffusers 0.27.2), loaded once. The reader is a minimal F32-only
/// safetensors parser private to these tests.
/// </summary>
public sealed class SchedulerFixture
{
    public SchedulerFixture()
    {
        string dir = CTCal.Tests.TestPaths.Fixtures;
        Json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "schedulers.json")));
        Tensors = ReadF32Safetensors(Path.Combine(dir, "schedulers.safetensors"));
    }

    public JsonDocument Json { get; }

    public IReadOnlyDictionary<string, float[]> Tensors { get; }

    public IEnumerable<string> Cases => Json.RootElement.EnumerateObject().Select(p => p.Name);

    private static Dictionary<string, float[]> ReadF32Safetensors(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var result = new Dictionary<string, float[]>();
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__") continue;
            if (entry.Value.GetProperty("dtype").GetString() != "F32") throw new InvalidDataException($"{path}: {entry.Name} is not F32");
            var offsets = entry.Value.GetProperty("data_offsets");
            long begin = 8 + headerLength + offsets[0].GetInt64(), end = 8 + headerLength + offsets[1].GetInt64();
            var values = new float[(end - begin) / 4];
            for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(begin + 4 * i), 4));
            result[entry.Name] = values;
        }
        return result;
    }
}

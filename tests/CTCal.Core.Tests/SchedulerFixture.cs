using System.Text.Json;
using CTCal.Core.Safetensors;

namespace CTCal.Core.Tests;

/// <summary>tests/data/fixtures/schedulers.json + .safetensors (diffusers 0.27.2), loaded once for a test class.</summary>
public sealed class SchedulerFixture
{
    public SchedulerFixture()
    {
        string dir = CTCal.Tests.TestPaths.Fixtures;
        Json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "schedulers.json")));
        using var file = SafetensorsFile.Open(Path.Combine(dir, "schedulers.safetensors"));
        Tensors = file.Tensors.ToDictionary(t => t.Name, t => file.ReadAsFloat32(t.Name));
    }

    public JsonDocument Json { get; }

    public IReadOnlyDictionary<string, float[]> Tensors { get; }

    public IEnumerable<string> Cases => Json.RootElement.EnumerateObject().Select(p => p.Name);
}

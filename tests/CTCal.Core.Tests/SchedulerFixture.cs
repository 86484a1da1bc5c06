using System.Text.Json;
using CTCal.Core.Safetensors;

namespace CTCal.Core.Tests;

/// <summary>tests/data/fixtures/schedulers.json + .safetensors (diffusers 0.27.2), loaded once for a test class.</summary>
public class SchedulerFixture
{
    public SchedulerFixture()
        : this("schedulers")
    {
    }

    /// <param name="stem">The fixture's file name without extension: <c>{stem}.json</c> and <c>{stem}.safetensors</c>.</param>
    protected SchedulerFixture(string stem)
    {
        string dir = CTCal.Tests.TestPaths.Fixtures;
        Json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, stem + ".json")));
        using var file = SafetensorsFile.Open(Path.Combine(dir, stem + ".safetensors"));
        Tensors = file.Tensors.ToDictionary(t => t.Name, t => file.ReadAsFloat32(t.Name));
    }

    public JsonDocument Json { get; }

    public IReadOnlyDictionary<string, float[]> Tensors { get; }

    public IEnumerable<string> Cases => Json.RootElement.EnumerateObject().Select(p => p.Name);
}

/// <summary>tests/data/fixtures/schedulers_extra.* (diffusers 0.27.2): LMS, DPM++ 2M without Karras sigmas, Euler with v-prediction and linspace spacing.</summary>
public sealed class SchedulerExtraFixture() : SchedulerFixture("schedulers_extra");

/// <summary>tests/data/fixtures/sd3/schedulers_flowmatch.* (diffusers 0.29.2): FlowMatchEulerDiscreteScheduler with shift 1 and 3 at 10 and 28 steps.</summary>
public sealed class FlowMatchSchedulerFixture() : SchedulerFixture(Path.Combine("sd3", "schedulers_flowmatch"));

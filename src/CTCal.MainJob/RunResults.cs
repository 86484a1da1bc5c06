using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using CTCal.Contracts;

namespace CTCal.MainJob;

/// <summary>Wall time of one stage.</summary>
public sealed record StageTime(string Stage, double Seconds);

/// <summary>The machine a run ran on.</summary>
public sealed record MachineInfo(string Os, string Framework, string Cpu, int Processors, double? LoadAverage1Min, long MemoryBytes)
{
    public static MachineInfo Current()
    {
        string cpu = RuntimeInformation.ProcessArchitecture.ToString();
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
            }

        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            // informational only
        }

        return new MachineInfo(RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription, cpu, Environment.ProcessorCount, LoadAverage(),
            GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
    }

    /// <summary>The one-minute load average (/proc/loadavg), or null where there is none; informational only.</summary>
    public static double? LoadAverage()
    {
        try
        {
            return File.Exists("/proc/loadavg") ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }
}

/// <summary>
/// How the run was made besides the recipe: paths, threads, the trainer settings given to every fine-tune (as
/// <c>--key value</c>), and each fine-tune's trainer job.
/// </summary>
public sealed record RunConfiguration(
    string BaseModel, bool FromScratch, ulong WorldSeed, int DatasetImages, int Threads, int Parallel, IReadOnlyList<string> TrainerOverrides,
    IReadOnlyDictionary<string, FineTuneJob> FineTuneJobs);

/// <summary>An evaluation prompt used in the run.</summary>
public sealed record PromptInfo(int Index, string Prompt, string Category, bool HeldOutPair);

/// <summary>Everything a main-job run measured; written as <c>results.json</c> and rendered into the reports.</summary>
public sealed record RunResults(
    string Label,
    bool Quick,
    DateTime StartedUtc,
    MainJobRecipe Recipe,
    RunConfiguration Configuration,
    MachineInfo Machine,
    IReadOnlyList<StageTime> Stages,
    double TotalSeconds,
    IReadOnlyList<PromptInfo> Prompts,
    IReadOnlyList<MethodSummary> Summaries,
    IReadOnlyList<Verdict> Verdicts,
    IReadOnlyList<ModelScores> Models,
    IReadOnlyList<FineTuneOutcome> FineTunes)
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
}

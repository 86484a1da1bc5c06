using System.Text.Json;
using System.Text.Json.Serialization;
using CTCal.Core.IO;

namespace CTCal.Synthetic;

/// <summary>Accuracy of one category: scenes, passes on the clean render and on the VAE round trip.</summary>
public sealed record CeilingCategory(PromptCategory Category, int Scenes, int CleanPassed, int RoundTripPassed)
{
    /// <summary>Clean-render accuracy.</summary>
    public double Clean => Scenes == 0 ? double.NaN : CleanPassed / (double)Scenes;

    /// <summary>Round-trip accuracy (the evaluator's ceiling on images the model's VAE can make).</summary>
    public double RoundTrip => Scenes == 0 ? double.NaN : RoundTripPassed / (double)Scenes;
}

/// <summary>A scene whose round trip (or clean render) failed its category check, with what the evaluator found.</summary>
public sealed record CeilingFailure(int Index, string Source, string Prompt, PromptCategory Category, bool CleanPassed,
    IReadOnlyList<string> Expected, IReadOnlyList<string> Detected);

/// <summary>The measured ceiling: per category and overall, and the failures.</summary>
public sealed record CeilingReport(string Vae, IReadOnlyList<CeilingCategory> Categories, CeilingCategory Overall,
    IReadOnlyList<CeilingFailure> Failures, double Seconds);

/// <summary>
/// <c>ceiling.json</c>, the evaluator ceiling's result file (<c>{"command": ..., "report": CeilingReport}</c>, enums as
/// names): written by <c>ctcal-train base ceiling</c> and read by the study's ceiling stage, both through this class.
/// </summary>
public static class CeilingReportFile
{
    /// <summary>The file name in the ceiling's output folder.</summary>
    public const string FileName = "ceiling.json";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    private sealed record Content([property: JsonPropertyName("command")] string Command, [property: JsonPropertyName("report")] CeilingReport Report);

    /// <summary>Writes <paramref name="report"/> and the <paramref name="command"/> that measured it into <paramref name="folder"/>, atomically.</summary>
    public static void Write(string folder, string command, CeilingReport report) =>
        AtomicFile.WriteText(Path.Combine(folder, FileName), JsonSerializer.Serialize(new Content(command, report), Json));

    /// <summary>Reads the report of <paramref name="file"/>.</summary>
    /// <exception cref="InvalidDataException">The file is missing or malformed (the message names it).</exception>
    public static CeilingReport Read(string file)
    {
        try
        {
            return JsonSerializer.Deserialize<Content>(File.ReadAllBytes(file), Json)?.Report is { Categories: not null, Overall: not null } report
                ? report : throw new InvalidDataException($"{file}: no ceiling report");
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            throw new InvalidDataException($"{file}: cannot read the evaluator ceiling ({e.Message})", e);
        }
    }
}

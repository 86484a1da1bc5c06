using System.Text.Json;
using CTCal.Core.IO;

namespace CTCal.MainJob.Study;

/// <summary>
/// A stage's <c>done.json</c>, written atomically as the stage's last file: its presence means the stage finished and
/// its outputs are complete.
/// </summary>
/// <param name="Stage">Stage name.</param>
/// <param name="Quick">Whether the stage ran with the study's smoke settings (<c>--quick</c>).</param>
/// <param name="Produced">Files and folders it wrote, relative to its folder.</param>
/// <param name="Seconds">Wall time of the stage.</param>
/// <param name="FinishedUtc">When it finished.</param>
/// <param name="Summary">Named numbers (counts, rates).</param>
/// <param name="Notes">Sentences worth reading.</param>
/// <param name="Family">The base's family (<see cref="StudySettings.Family"/>); null in records written before families, which were all sd1.</param>
public sealed record StudyDone(string Stage, bool Quick, IReadOnlyList<string> Produced, double Seconds, DateTime FinishedUtc,
    IReadOnlyDictionary<string, double> Summary, IReadOnlyList<string> Notes, string? Family = null)
{
    /// <summary>The family the stage ran on (<see cref="Family"/>, or sd1 for an older record).</summary>
    public string FamilyOrDefault => Family ?? CTCal.Core.Models.ModelFamily.Sd1;

    /// <summary>File name inside a stage folder.</summary>
    public const string FileName = "done.json";

    /// <summary>Writes <c>done.json</c> into <paramref name="folder"/> atomically.</summary>
    public void Write(string folder) => AtomicFile.WriteBytes(Path.Combine(folder, FileName), JsonSerializer.SerializeToUtf8Bytes(this, RunResults.Json));

    /// <summary>Reads the <c>done.json</c> of <paramref name="folder"/>, or null when there is none.</summary>
    /// <exception cref="InvalidDataException">The file is not a done record (the message names it).</exception>
    public static StudyDone? Read(string folder)
    {
        string file = Path.Combine(folder, FileName);
        if (!File.Exists(file))
        {
            return null;
        }

        try
        {
            var done = JsonSerializer.Deserialize<StudyDone>(File.ReadAllBytes(file), RunResults.Json);
            return done is { Stage: { Length: > 0 }, Produced: not null, Summary: not null, Notes: not null }
                ? done : throw new InvalidDataException($"{file}: not a stage's done record (stage, produced, summary and notes are required)");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{file}: not valid JSON ({e.Message}); delete the stage folder to redo it", e);
        }
    }
}

using System.Globalization;
using System.Text;
using CTCal.Core.IO;

namespace CTCal.MainJob.Study;

/// <summary>
/// <c>study.md</c>: a table of the stages (done with wall time, or not done yet), each done stage's own section
/// (<see cref="IStudyStage.Report"/>) and the stages the study does not have yet. Rewritten after every stage.
/// </summary>
public static class StudyReport
{
    /// <summary>File name in the study folder.</summary>
    public const string FileName = "study.md";

    /// <summary>
    /// The report's opening: the verdict of GORS + CTCal against GORS per metric with intervals and the image grid (main
    /// stage), the premise probe's answer and the evaluator ceiling, each when its stage is done.
    /// </summary>
    private static string Lead(IReadOnlyList<IStudyStage> stages, IReadOnlyList<string> folders, IReadOnlyList<StudyDone?> dones)
    {
        var md = new StringBuilder();
        for (int i = 0; i < stages.Count; i++)
        {
            if (dones[i] is not { } done) continue;
            try
            {
                switch (stages[i])
                {
                    case MainStudyStage main:
                        md.AppendLine(MainStudyStage.Verdicts(folders[i], done, main.Setting));
                        break;
                    case PremiseStudyStage premise:
                        md.AppendLine(PremiseLine(done, premise.Setting));
                        md.AppendLine();
                        break;
                    case CeilingStudyStage:
                        md.AppendLine(CeilingStudyStage.Line(done));
                        md.AppendLine();
                        break;
                }
            }
            catch (Exception e) when (e is IOException or InvalidDataException or System.Text.Json.JsonException or KeyNotFoundException or ArgumentException)
            {
                md.AppendLine(CultureInfo.InvariantCulture, $"({stages[i].Name}: could not be summarised: {e.Message})");
                md.AppendLine();
            }
        }

        return md.ToString();
    }

    private static string Get(StudyDone done, string key, string format = "0.000") =>
        done.Summary.TryGetValue(key, out double v) ? v.ToString(format, CultureInfo.InvariantCulture) : "–";

    /// <summary>Builds the report text for <paramref name="stages"/> in <paramref name="folders"/>.</summary>
    public static string Build(IReadOnlyList<IStudyStage> stages, IReadOnlyList<string> folders, StudySettings settings)
    {
        var md = new StringBuilder();
        bool comparison = stages.Any(s => s is ChosenRecipeStudyStage);
        string title = comparison ? "CTCal main comparison" : "CTCal study";
        md.AppendLine(settings.Quick ? $"# {title} — SMOKE RUN (--quick)" : $"# {title}");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Base model: `{settings.BaseModel}` (family {settings.Family}, images sampled with {settings.Scheduler}). Folder: `{settings.OutputFolder}`.");
        md.AppendLine();
        var dones = folders.Select(f => (Done: SafeRead(f, out string? problem), Problem: problem)).ToList();
        md.Append(Lead(stages, folders, dones.Select(d => d.Done).ToList()));
        md.AppendLine("| stage | status | wall time |");
        md.AppendLine("|---|---|---|");
        for (int i = 0; i < stages.Count; i++)
        {
            var (done, problem) = dones[i];
            string status = done is not null ? $"done {done.FinishedUtc:yyyy-MM-dd HH:mm} UTC" : problem ?? "**not done yet**";
            string time = done is null ? "–" : done.Seconds.ToString("0.0", CultureInfo.InvariantCulture) + " s";
            md.AppendLine(CultureInfo.InvariantCulture, $"| {StudyRunner.FolderName(i, stages[i].Name)} | {status} | {time} |");
        }

        for (int i = 0; i < stages.Count; i++)
        {
            md.AppendLine();
            md.AppendLine(CultureInfo.InvariantCulture, $"## {StudyRunner.FolderName(i, stages[i].Name)}");
            md.AppendLine();
            if (dones[i].Done is { } done)
            {
                string section;
                try
                {
                    section = stages[i].Report(folders[i], done).TrimEnd();
                }
                catch (Exception e) when (e is IOException or InvalidDataException or System.Text.Json.JsonException or KeyNotFoundException or UnauthorizedAccessException)
                {
                    section = $"(the stage's files could not be read for the report: {e.Message})";
                }

                md.AppendLine(section);
                if (done.Notes.Count > 0)
                {
                    md.AppendLine();
                    foreach (string note in done.Notes)
                    {
                        md.AppendLine("- " + note);
                    }
                }
            }
            else
            {
                md.AppendLine("Not done yet.");
            }
        }

        return md.ToString();
    }

    /// <summary>Writes <see cref="Build"/> to <c>study.md</c> in the study folder, atomically.</summary>
    public static void Write(IReadOnlyList<IStudyStage> stages, IReadOnlyList<string> folders, StudySettings settings) =>
        AtomicFile.WriteText(Path.Combine(settings.OutputFolder, FileName), Build(stages, folders, settings));

    private static StudyDone? SafeRead(string folder, out string? problem)
    {
        problem = null;
        try
        {
            return StudyDone.Read(folder);
        }
        catch (InvalidDataException e)
        {
            problem = "unreadable done.json: " + e.Message.Replace("|", "/", StringComparison.Ordinal);
            return null;
        }
    }

    /// <summary>
    /// The premise in one sentence: per map resolution the probe measured (16x16 and 8x8 for the UNet base, 8x8 for the
    /// SD3 base's 64 image tokens), largest first, the teacher-t mass, the largest-t mass and chance.
    /// </summary>
    private static string PremiseLine(StudyDone done, StudyBase setting)
    {
        var sides = done.Summary.Keys
            .Where(k => k.StartsWith("res", StringComparison.Ordinal) && k.EndsWith(".teacher_mass", StringComparison.Ordinal))
            .Select(k => int.Parse(k.AsSpan(3, k.IndexOf('.', StringComparison.Ordinal) - 3), CultureInfo.InvariantCulture))
            .OrderDescending().ToList();
        string Per(string field) => string.Join(" / ", sides.Select(r => Get(done, $"res{r}.{field}")));
        string where = string.Join(" / ", sides.Select(r => $"{r}x{r}"));
        return string.Create(CultureInfo.InvariantCulture,
            $"{(setting.IsWeak ? "Premise on the weak base" : "Premise")}: a noun's attention mass inside its subject's mask at the teacher t is {Per("teacher_mass")} ({where}) against {Per("large_t_mass")} at the largest t and {Per("chance")} by chance (mask area); {Get(done, "layers_holding", "0")} of {Get(done, "layers", "0")} layers hold it.");
    }
}

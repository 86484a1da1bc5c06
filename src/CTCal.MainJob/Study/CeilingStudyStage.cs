using System.Globalization;
using System.Text;
using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>ceiling</c>: the evaluator's accuracy on ground-truth scenes round-tripped through the base model's VAE
/// (<c>ctcal-train base ceiling</c>, run as a child process into <c>ceiling/</c>): no generated image is cleaner than its
/// VAE decode, so this is the ceiling of every score in the study. Its summary holds the round-trip accuracy per category.
/// </summary>
public sealed class CeilingStudyStage : IStudyStage
{
    /// <summary>The trainer's output folder in the stage folder.</summary>
    public const string CeilingFolder = "ceiling";

    /// <inheritdoc/>
    public string Name => "ceiling";

    /// <inheritdoc/>
    public bool Resumable => false;

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var s = context.Settings;
        string output = Path.Combine(context.Folder, CeilingFolder);
        string threads = s.Threads.ToString(CultureInfo.InvariantCulture);
        List<string> args = ["base", "ceiling", "--vae", s.BaseModel, "--out", output, "--threads", threads];
        if (s.Quick) args.AddRange(["--layouts", "1", "--train-per-category", "10"]);
        await BaseModelStage.RunAsync(BuildInfo.TrainerExecutable(), args, line => context.Say("ceiling: " + line), ct);
        var summary = Read(Path.Combine(output, CeilingReportFile.FileName));
        return new StudyStageResult([CeilingFolder], summary, []);
    }

    /// <summary>Round-trip and clean accuracy per category (<c>&lt;category&gt;.round_trip</c>, <c>.clean</c>, <c>.scenes</c>) and overall, from <c>ceiling.json</c>.</summary>
    /// <exception cref="InvalidDataException">The file is missing or malformed (the message names it).</exception>
    public static Dictionary<string, double> Read(string file)
    {
        var report = CeilingReportFile.Read(file);
        var summary = new Dictionary<string, double>();
        foreach (var (name, c) in report.Categories.Select(c => (Metrics.Word(c.Category), c)).Append(("overall", report.Overall)))
        {
            summary[$"{name}.scenes"] = c.Scenes;
            summary[$"{name}.clean"] = c.Clean;
            summary[$"{name}.round_trip"] = c.RoundTrip;
        }

        return summary;
    }

    /// <summary>One line: round-trip accuracy per category.</summary>
    public static string Line(StudyDone done) => "Evaluator ceiling (accuracy on ground-truth scenes round-tripped through the base's VAE): " + string.Join(", ",
        Enum.GetValues<PromptCategory>().Select(c => Metrics.Word(c)).Where(w => done.Summary.ContainsKey($"{w}.round_trip"))
            .Select(w => $"{w} {Metrics.Pct(done.Summary[$"{w}.round_trip"])} of {done.Summary[$"{w}.scenes"].ToString("0", CultureInfo.InvariantCulture)}")) + ".";

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var md = new StringBuilder();
        md.AppendLine(Line(done));
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Details: `{CeilingFolder}/ceiling.md`; failures: `{CeilingFolder}/ceiling_failures.png` (ground truth | round trip | what the scorer saw).");
        return md.ToString();
    }
}

using System.Globalization;
using System.Text;
using CTCal.Core.Probes;
using NLog;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>premise</c>: the premise probe (<c>ctcal-train probe</c>, docs/premise-probe.md) of the base model on
/// the first <see cref="StudySettings.ProbeRecords"/> records of the world stage's dataset, run as a child process;
/// <c>probe.json</c> and <c>probe.md</c> are copied into the stage folder from the probe's own output folder.
/// </summary>
public sealed class PremiseStudyStage : IStudyStage
{
    private static readonly Logger Log = LogManager.GetLogger("ctcal-main.study");

    /// <summary>Files of the stage (the probe's own names).</summary>
    public const string JsonFile = PremiseProbeResult.JsonFileName, MarkdownFile = PremiseProbeResult.MarkdownFileName, ProbeFolder = "probe-out";

    private readonly StudyBase _base;

    /// <summary>The stage for <paramref name="studyBase"/> (default: the shipped base).</summary>
    public PremiseStudyStage(StudyBase? studyBase = null) => _base = studyBase ?? StudyBase.Shipped;

    /// <summary>The base this stage works on.</summary>
    public StudyBase Setting => _base;

    /// <inheritdoc/>
    public string Name => _base.Stage("premise");

    /// <inheritdoc/>
    public bool Resumable => false;

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var settings = context.Settings;
        string worldFolder = context.FolderOf("world");
        var world = WorldStudyStage.StudyWorld.Read(worldFolder);
        string data = Path.Combine(worldFolder, WorldStudyStage.DataFolder);
        string trainer = BuildInfo.TrainerExecutable();
        string output = Path.Combine(context.Folder, ProbeFolder);
        string[] arguments =
        [
            "probe", "--model", _base.Model(context), "--data", data, "--out", output,
            "--records", settings.ProbeRecords.ToString(CultureInfo.InvariantCulture),
            "--resolution", world.ImageSize.ToString(CultureInfo.InvariantCulture),
            "--threads", settings.Threads.ToString(CultureInfo.InvariantCulture),
        ];
        context.Say($"{Name}: ctcal-train {string.Join(' ', arguments)}");
        await BaseModelStage.RunAsync(trainer, arguments, line =>
        {
            Log.Debug("probe: {0}", line);
            if (line.StartsWith("probe:", StringComparison.Ordinal) || line.Contains("premise", StringComparison.Ordinal))
            {
                context.Say(line);
            }
        }, ct);
        foreach (string file in new[] { JsonFile, MarkdownFile })
        {
            string source = Path.Combine(output, file);
            if (!File.Exists(source))
                throw new InvalidOperationException($"ctcal-train probe exited 0 but wrote no {source}");
            File.Copy(source, Path.Combine(context.Folder, file), overwrite: true);
        }

        var probe = PremiseProbeResult.Read(Path.Combine(context.Folder, JsonFile));
        var verdicts = probe.Verdicts;
        var summary = new Dictionary<string, double> { ["records"] = probe.Records, ["nouns"] = probe.Nouns };
        foreach (var v in verdicts.Where(v => v.Layer == "*"))
        {
            string r = v.Resolution.ToString(CultureInfo.InvariantCulture);
            summary[$"res{r}.teacher_mass"] = v.TeacherMass;
            summary[$"res{r}.large_t_mass"] = v.LargeTMass;
            summary[$"res{r}.chance"] = v.Chance;
            summary[$"res{r}.holds"] = v.Holds ? 1 : 0;
        }

        summary["layers_holding"] = verdicts.Count(v => v.Layer != "*" && v.Holds);
        summary["layers"] = verdicts.Count(v => v.Layer != "*");
        return new StudyStageResult([JsonFile, MarkdownFile, ProbeFolder], summary, []);
    }

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var verdicts = PremiseProbeResult.Read(Path.Combine(folder, JsonFile)).Verdicts;
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Premise probe of {_base.Words} on {WorldStudyStage.Get(done, "records")} training records ({WorldStudyStage.Get(done, "nouns")} subject nouns): share of a noun's attention inside its subject's mask at the teacher (smallest) t and the largest t, against chance (the mask's area). Full tables: `{MarkdownFile}`.");
        md.AppendLine();
        md.AppendLine("| layer | map side | teacher mass | large-t mass | chance | premise holds |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var v in verdicts)
        {
            md.AppendLine(CultureInfo.InvariantCulture,
                $"| {(v.Layer == PremiseProbeResult.AllLayers ? "all layers" : v.Layer)} | {v.Resolution} | {v.TeacherMass:0.0000} | {v.LargeTMass:0.0000} | {v.Chance:0.0000} | {(v.Holds ? "yes" : "**no**")} |");
        }

        return md.ToString();
    }
}

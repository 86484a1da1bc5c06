using System.Globalization;
using System.Text;
using System.Text.Json;
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
    public const string JsonFile = "probe.json", MarkdownFile = "probe.md", ProbeFolder = "probe-out";

    /// <inheritdoc/>
    public string Name => "premise";

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
            "probe", "--model", settings.BaseModel, "--data", data, "--out", output,
            "--records", settings.ProbeRecords.ToString(CultureInfo.InvariantCulture),
            "--resolution", world.ImageSize.ToString(CultureInfo.InvariantCulture),
            "--threads", settings.Threads.ToString(CultureInfo.InvariantCulture),
        ];
        context.Say($"premise: ctcal-train {string.Join(' ', arguments)}");
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

        var verdicts = ReadVerdicts(Path.Combine(context.Folder, JsonFile));
        var summary = new Dictionary<string, double> { ["records"] = ReadInt(Path.Combine(context.Folder, JsonFile), "records"), ["nouns"] = ReadInt(Path.Combine(context.Folder, JsonFile), "nouns") };
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

    /// <summary>One verdict row of <c>probe.json</c>.</summary>
    public sealed record Verdict(string Layer, int Resolution, double TeacherMass, double LargeTMass, double Chance, bool Holds);

    /// <summary>The verdicts of a <c>probe.json</c>.</summary>
    /// <exception cref="InvalidDataException">The file is not a probe result (the message names it and the field).</exception>
    public static IReadOnlyList<Verdict> ReadVerdicts(string file)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            return doc.RootElement.GetProperty("verdicts").EnumerateArray().Select(v => new Verdict(
                v.GetProperty("layer").GetString() ?? "", v.GetProperty("resolution").GetInt32(), v.GetProperty("teacher_mass").GetDouble(),
                v.GetProperty("large_t_mass").GetDouble(), v.GetProperty("chance").GetDouble(), v.GetProperty("holds").GetBoolean())).ToList();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{file}: not a premise probe result (verdicts: layer, resolution, teacher_mass, large_t_mass, chance, holds): {e.Message}", e);
        }
    }

    private static int ReadInt(string file, string key)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
        return doc.RootElement.TryGetProperty(key, out var v) && v.TryGetInt32(out int n) ? n : throw new InvalidDataException($"{file}: '{key}' missing or not an integer");
    }

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var verdicts = ReadVerdicts(Path.Combine(folder, JsonFile));
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Premise probe of the base model on {WorldStudyStage.Get(done, "records")} training records ({WorldStudyStage.Get(done, "nouns")} subject nouns): share of a noun's attention inside its subject's mask at the teacher (smallest) t and the largest t, against chance (the mask's area). Full tables: `{MarkdownFile}`.");
        md.AppendLine();
        md.AppendLine("| layer | map side | teacher mass | large-t mass | chance | premise holds |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var v in verdicts)
        {
            md.AppendLine(CultureInfo.InvariantCulture,
                $"| {(v.Layer == "*" ? "all layers" : v.Layer)} | {v.Resolution} | {v.TeacherMass:0.0000} | {v.LargeTMass:0.0000} | {v.Chance:0.0000} | {(v.Holds ? "yes" : "**no**")} |");
        }

        return md.ToString();
    }
}

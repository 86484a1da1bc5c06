using System.Diagnostics;
using System.Globalization;
using NLog;

namespace CTCal.MainJob.Study;

/// <summary>What the runner did with one stage.</summary>
public enum StudyStageStatus
{
    /// <summary>Ran to its done.json in this run.</summary>
    Ran,

    /// <summary>Had a done.json already; not run.</summary>
    Skipped,

    /// <summary>Not reached (after the <c>--only</c> stage).</summary>
    NotRun,
}

/// <summary>One stage's outcome in a run of <see cref="StudyRunner"/>.</summary>
public sealed record StudyStageOutcome(string Stage, string Folder, StudyStageStatus Status, StudyDone? Done);

/// <summary>
/// The resumable stage runner of <c>ctcal-main study</c>: stage i writes into <c>&lt;out&gt;/&lt;nn&gt;-&lt;name&gt;/</c>
/// (nn = i + 1, two digits) and is finished when its <c>done.json</c> (<see cref="StudyDone"/>) is there, written
/// atomically after everything else. A rerun skips finished stages (and says so). A stage folder without
/// <c>done.json</c> is what a killed run left: it is cleared before the stage runs again, unless the stage is
/// <see cref="IStudyStage.Resumable"/> (it then reuses its own checkpoints). After every stage, finished or skipped,
/// <c>study.md</c> is rewritten from the finished stages (<see cref="StudyReport"/>).
/// </summary>
public sealed class StudyRunner
{
    private static readonly Logger Log = LogManager.GetLogger("ctcal-main.study");

    private readonly IReadOnlyList<IStudyStage> _stages;
    private readonly StudySettings _settings;
    private readonly Action<string> _say;

    /// <summary>A runner of <paramref name="stages"/>, in order.</summary>
    /// <exception cref="ArgumentException">A stage name is empty, malformed or repeated.</exception>
    public StudyRunner(IReadOnlyList<IStudyStage> stages, StudySettings settings, Action<string> say)
    {
        ArgumentNullException.ThrowIfNull(stages);
        ArgumentNullException.ThrowIfNull(settings);
        foreach (var s in stages)
        {
            if (string.IsNullOrEmpty(s.Name) || !s.Name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'))
                throw new ArgumentException($"study stage name '{s.Name}' must be lowercase letters, digits and '-'", nameof(stages));
        }

        if (stages.GroupBy(s => s.Name).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new ArgumentException($"study stage '{twice.Key}' is listed twice", nameof(stages));
        _stages = stages;
        _settings = settings;
        _say = say;
    }

    /// <summary>The folder of stage <paramref name="index"/> (0-based) named <paramref name="name"/>.</summary>
    public static string FolderName(int index, string name) => string.Create(CultureInfo.InvariantCulture, $"{index + 1:00}-{name}");

    /// <summary>The stage folders, in order.</summary>
    public IReadOnlyList<string> Folders => _stages.Select((s, i) => Path.Combine(_settings.OutputFolder, FolderName(i, s.Name))).ToList();

    /// <summary>
    /// Runs every stage without a done.json in order, or, with <paramref name="only"/>, just that stage (the stages
    /// before it must be done). Returns each stage's outcome.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="only"/> names no stage.</exception>
    /// <exception cref="InvalidOperationException">A done stage ran with the other quick setting, or a needed stage is not done.</exception>
    public async Task<IReadOnlyList<StudyStageOutcome>> RunAsync(string? only, CancellationToken ct)
    {
        int onlyIndex = -1;
        if (only is not null)
        {
            onlyIndex = _stages.ToList().FindIndex(s => s.Name == only);
            if (onlyIndex < 0)
                throw new ArgumentException($"--only: no study stage '{only}' (stages: {string.Join(", ", _stages.Select(s => s.Name))})");
        }

        Directory.CreateDirectory(_settings.OutputFolder);
        using var log = RunLog.To(_settings.OutputFolder);
        var folders = Folders;
        var outcomes = new List<StudyStageOutcome>();
        for (int i = 0; i < _stages.Count; i++)
        {
            var stage = _stages[i];
            string folder = folders[i];
            var done = StudyDone.Read(folder);
            if (done is not null && done.Quick != _settings.Quick)
            {
                throw new InvalidOperationException(
                    $"{Path.Combine(folder, StudyDone.FileName)}: stage '{stage.Name}' was done {(done.Quick ? "with" : "without")} --quick; use another --out or delete the folder");
            }

            if (done is not null && done.FamilyOrDefault != _settings.Family)
            {
                throw new InvalidOperationException(
                    $"{Path.Combine(folder, StudyDone.FileName)}: stage '{stage.Name}' was done with --family {done.FamilyOrDefault}, not {_settings.Family}; use another --out or delete the folder");
            }

            if (done is not null)
            {
                Say($"{FolderName(i, stage.Name)}: done already ({Seconds(done.Seconds)} on {done.FinishedUtc:yyyy-MM-dd HH:mm} UTC), skipped");
                outcomes.Add(new StudyStageOutcome(stage.Name, folder, StudyStageStatus.Skipped, done));
            }
            else if (onlyIndex >= 0 && i != onlyIndex)
            {
                outcomes.Add(new StudyStageOutcome(stage.Name, folder, StudyStageStatus.NotRun, null));
            }
            else
            {
                try
                {
                    done = await RunStageAsync(i, stage, folder, ct);
                }
                catch
                {
                    WriteReport(); // the report then says the stage is not done
                    throw;
                }

                outcomes.Add(new StudyStageOutcome(stage.Name, folder, StudyStageStatus.Ran, done));
            }

            WriteReport();
            if (i == onlyIndex)
            {
                outcomes.AddRange(_stages.Skip(i + 1).Select((s, k) => new StudyStageOutcome(s.Name, folders[i + 1 + k], StudyStageStatus.NotRun, null)));
                break;
            }
        }

        return outcomes;
    }

    private async Task<StudyDone> RunStageAsync(int index, IStudyStage stage, string folder, CancellationToken ct)
    {
        string label = FolderName(index, stage.Name);
        if (Directory.Exists(folder))
        {
            if (stage.Resumable)
            {
                Say($"{label}: unfinished folder found, resuming from its own checkpoints");
            }
            else
            {
                Say($"{label}: unfinished folder found (no {StudyDone.FileName}), cleared");
                Directory.Delete(folder, recursive: true);
            }
        }

        Directory.CreateDirectory(folder);
        Say($"{label}: start");
        Log.Info("study stage {0}: start", label);
        var clock = Stopwatch.StartNew();
        var context = new StudyStageContext(folder, _settings, name => DoneFolderBefore(index, name), Say);
        var result = await stage.RunAsync(context, ct);
        ct.ThrowIfCancellationRequested();
        var missing = result.Produced.Where(p => !File.Exists(Path.Combine(folder, p)) && !Directory.Exists(Path.Combine(folder, p))).ToList();
        if (missing.Count > 0)
            throw new InvalidOperationException($"study stage '{stage.Name}' says it produced {string.Join(", ", missing)} but {folder} has no such file");
        var done = new StudyDone(stage.Name, _settings.Quick, result.Produced, clock.Elapsed.TotalSeconds, DateTime.UtcNow, result.Summary, result.Notes, _settings.Family);
        done.Write(folder);
        Say($"{label}: done in {Seconds(done.Seconds)}");
        Log.Info("study stage {0}: {1:0.0} s", label, done.Seconds);
        return done;
    }

    private string DoneFolderBefore(int index, string name)
    {
        int i = _stages.ToList().FindIndex(s => s.Name == name);
        if (i < 0 || i >= index)
            throw new InvalidOperationException($"study stage '{_stages[index].Name}' asked for stage '{name}', which is not an earlier stage");
        string folder = Folders[i];
        if (StudyDone.Read(folder) is null)
            throw new InvalidOperationException($"study stage '{_stages[index].Name}' needs stage '{name}' done first ({Path.Combine(folder, StudyDone.FileName)} is missing): run 'ctcal-main study' or '--only {name}'");
        return folder;
    }

    /// <summary>Rewrites <c>study.md</c> from the stage folders as they are now.</summary>
    public void WriteReport() => StudyReport.Write(_stages, Folders, _settings);

    private void Say(string line)
    {
        Log.Info(line);
        _say(line);
    }

    private static string Seconds(double s) => s.ToString("0.0", CultureInfo.InvariantCulture) + " s";
}

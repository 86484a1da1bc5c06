using CTCal.MainJob.Study;
using CTCal.Tests;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>The study's stage runner: done stages are skipped, unfinished ones redone cleanly (or resumed), study.md follows.</summary>
public sealed class StudyRunnerTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-study-runner");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A stage that writes one file, optionally reads an earlier stage's file, and can fail midway.</summary>
    private sealed class FakeStage(string name, string? readsFrom = null, bool resumable = false) : IStudyStage
    {
        public string Name => name;

        public bool Resumable => resumable;

        public int Runs { get; private set; }

        /// <summary>When set, the stage writes a partial file and then fails (as a killed run leaves it).</summary>
        public bool FailMidway { get; set; }

        /// <summary>Files in the folder when the last run started.</summary>
        public IReadOnlyList<string> FoundAtStart { get; private set; } = [];

        public Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
        {
            Runs++;
            FoundAtStart = Directory.EnumerateFileSystemEntries(context.Folder).Select(Path.GetFileName).ToList()!;
            string input = readsFrom is null ? "" : File.ReadAllText(Path.Combine(context.FolderOf(readsFrom), "out.txt"));
            File.WriteAllText(Path.Combine(context.Folder, "partial.txt"), "half");
            if (FailMidway)
            {
                throw new IOException($"{name} killed midway");
            }

            File.Delete(Path.Combine(context.Folder, "partial.txt"));
            File.WriteAllText(Path.Combine(context.Folder, "out.txt"), input + name);
            return Task.FromResult(new StudyStageResult(["out.txt"], new Dictionary<string, double> { ["runs"] = Runs }, []));
        }

        public string Report(string folder, StudyDone done) => $"{name} wrote '{File.ReadAllText(Path.Combine(folder, "out.txt"))}'";
    }

    private StudySettings Settings(bool quick = false) => new() { OutputFolder = Path.Combine(_dir, "study"), BaseModel = Path.Combine(_dir, "base"), Quick = quick };

    private static StudyRunner Runner(StudySettings settings, List<string> said, params IStudyStage[] stages) => new(stages, settings, said.Add);

    [Fact]
    public async Task EveryStageRunsOnceThenARerunSkipsTheDoneOnes()
    {
        var a = new FakeStage("a");
        var b = new FakeStage("b", readsFrom: "a");
        var said = new List<string>();
        var settings = Settings();

        var first = await Runner(settings, said, a, b).RunAsync(null, CancellationToken.None);
        Assert.All(first, o => Assert.Equal(StudyStageStatus.Ran, o.Status));
        Assert.Equal("ab", File.ReadAllText(Path.Combine(settings.OutputFolder, "02-b", "out.txt")));
        var done = StudyDone.Read(Path.Combine(settings.OutputFolder, "01-a"))!;
        Assert.Equal("a", done.Stage);
        Assert.Equal(["out.txt"], done.Produced);
        Assert.True(done.Seconds >= 0);

        said.Clear();
        var second = await Runner(settings, said, a, b).RunAsync(null, CancellationToken.None);
        Assert.All(second, o => Assert.Equal(StudyStageStatus.Skipped, o.Status));
        Assert.Equal((1, 1), (a.Runs, b.Runs));
        Assert.Contains(said, l => l.StartsWith("01-a: done already", StringComparison.Ordinal));
        Assert.Contains(said, l => l.StartsWith("02-b: done already", StringComparison.Ordinal));

        string report = File.ReadAllText(Path.Combine(settings.OutputFolder, StudyReport.FileName));
        Assert.Contains("b wrote 'ab'", report);
        Assert.DoesNotContain("Not done yet.", report);
        Assert.DoesNotContain("Not implemented yet", report); // every stage of the issue exists
    }

    [Fact]
    public async Task AStageFolderWithoutDoneJsonIsRunAgain()
    {
        var a = new FakeStage("a");
        var b = new FakeStage("b", readsFrom: "a");
        var settings = Settings();
        await Runner(settings, [], a, b).RunAsync(null, CancellationToken.None);
        File.Delete(Path.Combine(settings.OutputFolder, "02-b", StudyDone.FileName));

        var again = await Runner(settings, [], a, b).RunAsync(null, CancellationToken.None);

        Assert.Equal([StudyStageStatus.Skipped, StudyStageStatus.Ran], again.Select(o => o.Status));
        Assert.Equal((1, 2), (a.Runs, b.Runs));
        Assert.Equal(2, again[1].Done!.Summary["runs"]);
    }

    [Fact]
    public async Task AStageKilledMidwayIsRedoneFromAClearedFolder()
    {
        var a = new FakeStage("a");
        var b = new FakeStage("b", readsFrom: "a") { FailMidway = true };
        var settings = Settings();
        string folder = Path.Combine(settings.OutputFolder, "02-b");

        await Assert.ThrowsAsync<IOException>(() => Runner(settings, [], a, b).RunAsync(null, CancellationToken.None));
        Assert.True(File.Exists(Path.Combine(folder, "partial.txt")));
        Assert.Null(StudyDone.Read(folder));
        string report = File.ReadAllText(Path.Combine(settings.OutputFolder, StudyReport.FileName));
        Assert.Contains("## 02-b" + Environment.NewLine + Environment.NewLine + "Not done yet.", report);
        Assert.Contains("| 02-b | **not done yet** |", report);

        b.FailMidway = false;
        var said = new List<string>();
        var outcomes = await Runner(settings, said, a, b).RunAsync(null, CancellationToken.None);

        Assert.Equal(StudyStageStatus.Ran, outcomes[1].Status);
        Assert.Empty(b.FoundAtStart); // the partial output was cleared before the stage ran again
        Assert.False(File.Exists(Path.Combine(folder, "partial.txt")));
        Assert.Equal(["out.txt"], StudyDone.Read(folder)!.Produced);
        Assert.Contains(said, l => l.Contains("02-b: unfinished folder found", StringComparison.Ordinal) && l.Contains("cleared", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AResumableStageFindsItsOwnCheckpoints()
    {
        var a = new FakeStage("a", resumable: true) { FailMidway = true };
        var settings = Settings();
        await Assert.ThrowsAsync<IOException>(() => Runner(settings, [], a).RunAsync(null, CancellationToken.None));

        a.FailMidway = false;
        await Runner(settings, [], a).RunAsync(null, CancellationToken.None);

        Assert.Equal(["partial.txt"], a.FoundAtStart);
        Assert.NotNull(StudyDone.Read(Path.Combine(settings.OutputFolder, "01-a")));
    }

    [Fact]
    public async Task OnlyRunsTheNamedStageWhoseInputsMustBeDone()
    {
        var a = new FakeStage("a");
        var b = new FakeStage("b", readsFrom: "a");
        var c = new FakeStage("c");
        var settings = Settings();

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner(settings, [], a, b, c).RunAsync("b", CancellationToken.None));
        Assert.Contains("needs stage 'a' done first", e.Message);
        Assert.Equal(0, a.Runs);
        Assert.Null(StudyDone.Read(Path.Combine(settings.OutputFolder, "02-b")));

        var first = await Runner(settings, [], a, b, c).RunAsync("a", CancellationToken.None);
        Assert.Equal([StudyStageStatus.Ran, StudyStageStatus.NotRun, StudyStageStatus.NotRun], first.Select(o => o.Status));
        Assert.Contains("## 03-c" + Environment.NewLine + Environment.NewLine + "Not done yet.", File.ReadAllText(Path.Combine(settings.OutputFolder, StudyReport.FileName)));

        var second = await Runner(settings, [], a, b, c).RunAsync("b", CancellationToken.None);
        Assert.Equal([StudyStageStatus.Skipped, StudyStageStatus.Ran, StudyStageStatus.NotRun], second.Select(o => o.Status));
        Assert.Equal(0, c.Runs);

        var bad = await Assert.ThrowsAsync<ArgumentException>(() => Runner(settings, [], a, b, c).RunAsync("nope", CancellationToken.None));
        Assert.Contains("no study stage 'nope'", bad.Message);
    }

    [Fact]
    public async Task QuickAndFullStagesAreNotMixedInOneFolder()
    {
        var settings = Settings(quick: true);
        await Runner(settings, [], new FakeStage("a")).RunAsync(null, CancellationToken.None);

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner(settings with { Quick = false }, [], new FakeStage("a")).RunAsync(null, CancellationToken.None));
        Assert.Contains("was done with --quick", e.Message);
    }

    [Fact]
    public async Task StagesOfOneFamilyAreNotMixedWithAnotherInOneFolder()
    {
        var settings = Settings();
        await Runner(settings, [], new FakeStage("a")).RunAsync(null, CancellationToken.None);
        Assert.Equal("sd1", StudyDone.Read(Path.Combine(settings.OutputFolder, "01-a"))!.Family);

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Runner(settings with { Family = "sd3" }, [], new FakeStage("a")).RunAsync(null, CancellationToken.None));
        Assert.Contains("was done with --family sd1, not sd3", e.Message);

        // A record from before families were recorded reads as sd1.
        string file = Path.Combine(settings.OutputFolder, "01-a", StudyDone.FileName);
        var old = StudyDone.Read(Path.GetDirectoryName(file)!)! with { Family = null };
        old.Write(Path.GetDirectoryName(file)!);
        var said = new List<string>();
        await Runner(settings, said, new FakeStage("a")).RunAsync(null, CancellationToken.None);
        Assert.Contains(said, l => l.Contains("done already", StringComparison.Ordinal));
    }

    [Fact]
    public void TheSd3ComparisonSweepsInsteadOfBorrowingTheUNetBasesChoice()
    {
        Assert.IsType<ChosenRecipeStudyStage>(StudyStages.Comparison()[3]);
        var sd3 = StudyStages.Comparison("sd3");
        Assert.IsType<SweepStudyStage>(sd3[3]);
        Assert.Equal(StudyStages.Comparison().Select(s => s.Name), sd3.Select(s => s.Name));
        var e = Assert.Throws<ArgumentException>(() => (Settings() with { Family = "sd2" }).Validate());
        Assert.Contains("--family must be one of sd1, sd3, got 'sd2'", e.Message);
        Assert.Equal("ddim", Settings().Scheduler);
        Assert.Equal("FlowMatchEulerDiscreteScheduler", (Settings() with { Family = "sd3" }).Scheduler);

        // The UNet base's Min-SNR weighting is a DDPM option: an SD3 recipe drops it, and keeping it is refused.
        var sd3Settings = (Settings() with { Family = "sd3" }).ForQuick().ForFamily();
        Assert.Null(sd3Settings.Recipe.MinSnrGamma);
        Assert.Null(sd3Settings.Recipe.Job("ctcal", 1, 1e-3, 0.1, []).MinSnrGamma);
        Assert.False(sd3Settings.Recipe.Job("ctcal", 1, 1e-3, 0.1, []).TrainTextEncoder);
        Assert.True(Settings().ForFamily().Recipe.Job("ctcal", 1, 1e-3, 0.1, []).TrainTextEncoder);
        sd3Settings.Validate();
        Assert.Equal(5, Settings().ForFamily().Recipe.MinSnrGamma);
        var kept = Assert.Throws<ArgumentException>(() => (Settings() with { Family = "sd3" }).Validate());
        Assert.Contains("min-snr-gamma", kept.Message);
    }

    [Fact]
    public void StageNamesMustBeFolderSafeAndUnique()
    {
        Assert.Throws<ArgumentException>(() => Runner(Settings(), [], new FakeStage("a"), new FakeStage("a")));
        Assert.Throws<ArgumentException>(() => Runner(Settings(), [], new FakeStage("A/b")));
    }

    [Fact]
    public async Task AStageClaimingAFileItDidNotWriteIsNotDone()
    {
        var settings = Settings();
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner(settings, [], new LyingStage()).RunAsync(null, CancellationToken.None));
        Assert.Contains("missing.txt", e.Message);
        Assert.Null(StudyDone.Read(Path.Combine(settings.OutputFolder, "01-liar")));
    }

    private sealed class LyingStage : IStudyStage
    {
        public string Name => "liar";

        public bool Resumable => false;

        public Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct) =>
            Task.FromResult(new StudyStageResult(["missing.txt"], new Dictionary<string, double>(), []));

        public string Report(string folder, StudyDone done) => "";
    }
}

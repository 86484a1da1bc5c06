using System.Text.Json;
using CTCal.Core.Probes;
using CTCal.MainJob.Study;
using CTCal.Synthetic;
using CTCal.Tests;
using Spectre.Console;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>The study's stages: their pure parts, and <c>study --quick</c> end to end on the shipped base model.</summary>
public sealed class StudyStagesTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-study-stages");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void WorldStageWritesMaskedDataAndADisjointPromptSplit()
    {
        var record = new WorldStudyStage.StudyWorld(3, 64, 6, 5, 4);
        var result = WorldStudyStage.Write(_dir, record, _ => { }, CancellationToken.None);

        Assert.Equal(record, WorldStudyStage.StudyWorld.Read(_dir));
        Assert.True(DatasetStage.Matches(Path.Combine(_dir, WorldStudyStage.DataFolder), record.Options));
        var validation = DatasetWriter.ReadEvalPrompts(Path.Combine(_dir, WorldStudyStage.ValidationFile));
        var test = DatasetWriter.ReadEvalPrompts(Path.Combine(_dir, WorldStudyStage.TestFile));
        Assert.Equal(validation.Count, (int)Enum.GetValues<PromptCategory>().Sum(c => result.Summary[$"validation.{Metrics.Word(c)}"]));
        Assert.Equal(5, validation.Count(p => p.Category == PromptCategory.Spatial));
        Assert.Equal(4, test.Count(p => p.Category == PromptCategory.Spatial));
        Assert.Empty(validation.Select(p => p.Spec.CanonicalKey).Intersect(test.Select(p => p.Spec.CanonicalKey)));
        var world = SyntheticWorld.Create(record.Options);
        Assert.Empty(world.TrainSpecs.Select(s => s.CanonicalKey).Intersect(validation.Concat(test).Select(p => p.Spec.CanonicalKey)));
    }

    [Fact]
    public void GorsPromptsAreTrainingSplitCaptionsOfTheirSpecsAndDeterministic()
    {
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 1, TrainCount = 50 });
        var split = PromptSplit.Create(world);
        var prompts = GorsDataStudyStage.TrainingPrompts(world, split, 6);
        var trainKeys = world.TrainSpecs.Select(s => s.CanonicalKey).ToHashSet();

        Assert.All(Enum.GetValues<PromptCategory>(), c => Assert.Equal(6, prompts.Count(p => p.Spec.Category == c)));
        Assert.All(prompts, p =>
        {
            Assert.Contains(p.Spec.CanonicalKey, trainKeys);
            Assert.False(split.IsHeldBack(p.Prompt));
            Assert.Equal(p.Spec, CaptionGrammar.Parse(p.Prompt));
        });
        Assert.Equal(prompts.Count, prompts.Select(p => p.Spec.CanonicalKey).Distinct().Count());
        Assert.Equal(prompts.Count, prompts.Select(p => p.Id).Distinct().Count());
        Assert.Equal(prompts, GorsDataStudyStage.TrainingPrompts(world, split, 6));
        // More than the world has: every training group of the category, no repeats.
        int counting = world.TrainSpecs.Where(s => s.Category == PromptCategory.Counting).Select(s => s.CanonicalKey).Distinct().Count();
        Assert.Equal(counting, GorsDataStudyStage.TrainingPrompts(world, split, 10_000).Count(p => p.Spec.Category == PromptCategory.Counting));
    }

    [Fact]
    public void ProbeResultsAreReadThroughTheOneOwnerOfTheFormatAndAMalformedFileIsNamed()
    {
        var written = new PremiseProbeResult([0, 900], 2, 3, 0,
            [new PremiseProbeRow(0, "down.attn2", 16, 0.3, 0.07, 4.3, 3), new PremiseProbeRow(900, "down.attn2", 16, 0.1, 0.07, 1.4, 3)],
            [new PremiseProbeRow(0, PremiseProbeResult.AllLayers, 16, 0.3, 0.07, 4.3, 3), new PremiseProbeRow(900, PremiseProbeResult.AllLayers, 16, 0.1, 0.07, 1.4, 3)]);
        written.Write(_dir, "ctcal-train probe ...");
        string file = Path.Combine(_dir, PremiseStudyStage.JsonFile);
        var read = PremiseProbeResult.Read(file);
        Assert.Equal((2, 3), (read.Records, read.Nouns));
        Assert.Equal(written.Verdicts, read.Verdicts);
        Assert.Equal(new PremiseVerdict(PremiseProbeResult.AllLayers, 16, 0.3, 0.1, 0.07, true), read.Verdicts[0]);

        File.WriteAllText(file, """{"verdicts": [{"layer": "*"}]}""");
        var e = Assert.Throws<InvalidDataException>(() => PremiseProbeResult.Read(file));
        Assert.Contains(file, e.Message);
    }

    [Theory]
    [InlineData(0.3, true)]   // teacher mass 4.3x chance and above the large-t mass: calibrated
    [InlineData(0.1, false)]  // 1.4x chance: near chance, no teacher worth copying
    public void TheStudysLayersAreThePremiseProbesAndABaseWithoutAnyStopsBeforeFineTuning(double teacherMass, bool worthIt)
    {
        string premise = Path.Combine(_dir, "02-premise");
        new PremiseProbeResult([0, 900], 2, 3, 0,
            [new PremiseProbeRow(0, "transformer_blocks.0.attn", 8, teacherMass, 0.07, teacherMass / 0.07, 3), new PremiseProbeRow(900, "transformer_blocks.0.attn", 8, 0.08, 0.07, 1.1, 3)],
            [new PremiseProbeRow(0, PremiseProbeResult.AllLayers, 8, teacherMass, 0.07, teacherMass / 0.07, 3), new PremiseProbeRow(900, PremiseProbeResult.AllLayers, 8, 0.08, 0.07, 1.1, 3)])
            .Write(premise, "ctcal-train probe ...");
        var settings = new StudySettings { OutputFolder = _dir, BaseModel = Path.Combine(_dir, "base") };
        var context = new StudyStageContext(Path.Combine(_dir, "04-sweep"), settings, _ => premise, _ => { });
        string file = Path.Combine(premise, PremiseStudyStage.JsonFile);

        if (worthIt)
        {
            Assert.Equal(["premise:" + file], SweepStudyStage.PremiseLayers(context));
        }
        else
        {
            var e = Assert.Throws<InvalidOperationException>(() => SweepStudyStage.PremiseLayers(context));
            Assert.Contains(file, e.Message);
            Assert.Contains("no teacher to calibrate toward on " + settings.BaseModel, e.Message);
        }

        // Layers given with --layers replace the probe's choice (whatever it found), and the report says so.
        var given = new StudyStageContext(context.Folder, settings with { Layers = ["all"] }, _ => premise, _ => { });
        Assert.Equal(["all"], SweepStudyStage.PremiseLayers(given));
        Assert.Contains("given with --layers", SweepStudyStage.LayersText(["all"]));
        Assert.Contains("the premise probe's", SweepStudyStage.LayersText(["premise:" + file]));
        Assert.Throws<ArgumentException>(() => (settings with { Layers = ["premise:" + file] }).Validate());
    }

    [Fact]
    public void SettingsRefuseGorsSeedsThatOverlapTheEvaluationSeeds()
    {
        var settings = new StudySettings { OutputFolder = _dir, BaseModel = _dir };
        settings.Validate();
        var e = Assert.Throws<ArgumentException>(() => (settings with { GorsSeedBase = 1010 }).Validate());
        Assert.Contains("overlap the evaluation seeds", e.Message);
    }

    [Fact]
    public async Task StudyVerbExitCodesNameTheProblem()
    {
        var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Ansi = AnsiSupport.No });
        console.Profile.Width = 4000;
        string o = Path.Combine(_dir, "cli");

        Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["study", "--out", o, "--only", "nope"], console, CancellationToken.None));
        Assert.Contains("no study stage 'nope' (stages: world, premise, gors-data, sweep, main, ablations, ground-truth, ceiling, weak-base, weak-premise, weak-gors-data, weak-main)", output.ToString());
        Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["study", "--out", o, "--parallel", "0"], console, CancellationToken.None));
        Assert.Contains("--parallel must be positive", output.ToString());

        string missing = Path.Combine(_dir, "no-base");
        Assert.Equal(ExitCodes.Failure, await MainJobCli.RunAsync(["study", "--quick", "--out", o, "--base", missing], console, CancellationToken.None));
        Assert.Contains($"base model folder {missing} not found", output.ToString());
        Assert.Contains("| 01-world | **not done yet** |", File.ReadAllText(Path.Combine(o, StudyReport.FileName)));
    }

    [Fact]
    public async Task QuickStudyRunsItsStagesAndAResumedGorsStageReusesItsImages()
    {
        string baseModel = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        var settings = new StudySettings { OutputFolder = Path.Combine(_dir, "study"), BaseModel = baseModel, Threads = 1, Parallel = 2 }.ForQuick()
            with { DatasetCount = 32, ProbeRecords = 2, GorsPromptsPerCategory = 2, SamplingSteps = 4 };
        var said = new List<string>();

        var stages = StudyStages.Default().Take(3).ToList();
        var outcomes = await new StudyRunner(stages, settings, said.Add).RunAsync(null, CancellationToken.None);

        Assert.Equal(["world", "premise", "gors-data"], outcomes.Select(o => o.Stage));
        Assert.All(outcomes, o => Assert.Equal(StudyStageStatus.Ran, o.Status));
        string o = settings.OutputFolder;
        foreach (string file in new[] { "01-world/data/metadata.jsonl", "01-world/validation_prompts.json", "02-premise/probe.json", "02-premise/probe.md",
            "03-gors-data/candidates.jsonl", "study.md" })
        {
            Assert.True(File.Exists(Path.Combine(o, file)), $"{file} missing");
        }

        var premise = outcomes[1].Done!;
        Assert.Equal(2, premise.Summary["records"]);
        Assert.InRange(premise.Summary["res16.chance"], 0, 1);
        var gors = outcomes[2].Done!;
        Assert.Equal(6, gors.Summary["candidates"]);
        Assert.Equal(0, gors.Summary["reused_prompts"]);
        string selection = Path.Combine(o, "03-gors-data", "dataset", GorsDatasetWriter.SelectionFileName);
        using (var doc = JsonDocument.Parse(File.ReadAllBytes(selection)))
        {
            Assert.All(doc.RootElement.GetProperty("files").EnumerateArray(), f => Assert.True(f.GetProperty("seed").GetInt64() >= settings.GorsSeedBase));
        }

        string report = File.ReadAllText(Path.Combine(o, StudyReport.FileName));
        Assert.Contains("SMOKE RUN", report);
        Assert.Contains("| all layers | 16 |", report);
        Assert.Contains("| spatial | 2 |", report);
        Assert.DoesNotContain("Not done yet.", report);

        // As if killed after generating: the images stay, done.json and the dataset go; the rerun reuses every image.
        File.Delete(Path.Combine(o, "03-gors-data", StudyDone.FileName));
        Directory.Delete(Path.Combine(o, "03-gors-data", "dataset"), recursive: true);
        said.Clear();
        var again = await new StudyRunner(stages, settings, said.Add).RunAsync(null, CancellationToken.None);
        Assert.Equal([StudyStageStatus.Skipped, StudyStageStatus.Skipped, StudyStageStatus.Ran], again.Select(x => x.Status));
        Assert.Equal(6, again[2].Done!.Summary["reused_prompts"]);
        Assert.Equal(gors.Summary["kept"], again[2].Done!.Summary["kept"]);
        Assert.Contains(said, l => l.Contains("resuming", StringComparison.Ordinal));

        // Other sampler settings: the old images are not reused.
        File.Delete(Path.Combine(o, "03-gors-data", StudyDone.FileName));
        said.Clear();
        var other = await new StudyRunner(stages, settings with { SamplingSteps = 8 }, said.Add).RunAsync(null, CancellationToken.None);
        Assert.Equal(0, other[2].Done!.Summary["reused_prompts"]);
        Assert.Contains(said, l => l.Contains("made with other settings", StringComparison.Ordinal));
    }
}

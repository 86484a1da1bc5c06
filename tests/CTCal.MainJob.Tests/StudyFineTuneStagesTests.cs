using CTCal.Contracts;
using CTCal.MainJob.Study;
using CTCal.Tests;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>
/// The study's fine-tune stages (sweep, main, ablations, ground-truth): their statistics, settings and recipe, and a
/// tiny run of every stage end to end on the shipped base with a resume in the middle.
/// </summary>
public sealed class StudyFineTuneStagesTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-study-finetunes");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static StudyModelResult Model(string id, long seed, params (int Prompt, long Seed, string Category, bool HeldOut, double Primary, double Overall)[] images) =>
        new(new StudyModel(id, id, seed, null), images.Select(i => new StudyImage(i.Prompt, i.Seed, i.Category, i.HeldOut, i.Primary, i.Overall, "x.png")).ToList(), null);

    [Fact]
    public void MetricsTakeTheirSubsetAndComparisonsPairSeedsAndUnits()
    {
        var a = Model("a", 1, (0, 1, "binding", false, 0, 0.5), (0, 2, "binding", false, 0, 0.5), (1, 1, "counting", true, 1, 1), (1, 2, "counting", true, 0, 0));
        var b = Model("b", 1, (0, 1, "binding", false, 1, 1), (0, 2, "binding", false, 1, 1), (1, 1, "counting", true, 1, 1), (1, 2, "counting", true, 0, 0));

        Assert.Equal(0.5, StudyComparison.Mean(a.Images, "overall"), 12);
        Assert.Equal(0.0, StudyComparison.Mean(a.Images, "binding"), 12);
        Assert.Equal(0.5, StudyComparison.Mean(a.Images, "counting"), 12);
        Assert.Equal(0.5, StudyComparison.Mean(a.Images, "seen"), 12);
        Assert.Equal(0.5, StudyComparison.Mean(a.Images, "held-out"), 12);
        Assert.True(double.IsNaN(StudyComparison.Mean(a.Images, "spatial")));

        var binding = StudyComparison.Compare([a], [b], "binding")!;
        Assert.Equal(1.0, binding.Difference, 12);
        Assert.True(binding.ExcludesZero);
        Assert.Equal(0.0, StudyComparison.Compare([a], [b], "counting")!.Difference, 12);
        Assert.Null(StudyComparison.Compare([a], [b], "spatial"));
        // One base model stands against every seed of the other side.
        var b2 = b with { Model = b.Model with { Id = "b2", Seed = 2 } };
        Assert.Equal(2, StudyComparison.Compare([a], [b, b2], "overall")!.SeedPairs);
        Assert.Equal("**+100.0 [+100.0, +100.0]**", StudyComparison.Cell(binding));
        Assert.StartsWith("binding: b beats a by +100.0 points", StudyComparison.Verdict("b", "a", "binding", binding), StringComparison.Ordinal);

        var missing = Model("short", 1, (0, 1, "binding", false, 0, 0));
        var e = Assert.Throws<ArgumentException>(() => StudyComparison.Compare([a], [missing], "binding"));
        Assert.Contains("'short'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MeasuresTakeTheMedianGradientRatioAndTheFirstAndLastAlignment()
    {
        var steps = new List<IReadOnlyDictionary<string, double>>
        {
            new Dictionary<string, double> { ["loss"] = 0.3, ["grad_diffusion"] = 2, ["grad_ctcal"] = 1, ["align_kl"] = 0.9, ["align_entropy"] = 0.8 },
            new Dictionary<string, double> { ["loss"] = 0.2 },
            new Dictionary<string, double> { ["loss"] = 0.1, ["grad_diffusion"] = 1, ["grad_ctcal"] = 3, ["align_kl"] = 0.4, ["align_entropy"] = 0.7 },
            new Dictionary<string, double> { ["loss"] = 0.05, ["grad_diffusion"] = 1, ["grad_ctcal"] = 0.1, ["align_kl"] = double.NaN },
        };

        var m = StudyModels.Measures(steps, 12.5, 2);

        Assert.Equal(0.5, m.MedianGradRatio!.Value, 12); // ratios 0.1, 0.5, 3
        Assert.Equal(0.9, m.AlignKlFirst);
        Assert.Equal(0.4, m.AlignKlLast);
        Assert.Equal(0.7, m.AlignEntropyLast);
        Assert.Equal(0.05, m.FinalLoss);
        Assert.Equal(2, m.Attempts);
        var vanilla = StudyModels.Measures([new Dictionary<string, double> { ["loss"] = 1, ["grad_diffusion"] = 1, ["align_kl"] = 0.2 }], 1, 1);
        Assert.Null(vanilla.MedianGradRatio);
        Assert.Equal(0.2, vanilla.AlignKlLast);
    }

    [Fact]
    public void SettingsGiveBothMethodsTheSameSearchAndPairAblationsWithMainSeeds()
    {
        var ok = new StudySettings { OutputFolder = _dir, BaseModel = _dir };
        ok.Validate();
        ok.ForQuick().Validate();

        var unequal = Assert.Throws<ArgumentException>(() => (ok with { SweepGorsLearningRates = [1e-3] }).Validate());
        Assert.Contains("same number of fine-tunes", unequal.Message, StringComparison.Ordinal);
        var unpaired = Assert.Throws<ArgumentException>(() => (ok with { AblationSeeds = [9] }).Validate());
        Assert.Contains("ablation seeds must be main seeds", unpaired.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => (ok with { TestImageSeeds = ok.EvaluationImageSeeds + 1 }).Validate());
    }

    [Fact]
    public void RecipeGivesTheBaseObjectiveTextEncoderLoraAndScaledAlignmentTerms()
    {
        var recipe = new StudyRecipe();
        var ctcal = recipe.Job(FineTuneStage.Ctcal, 3, 5e-4, 0.1, ["auto"]) with { Model = "m", Data = "d", Out = "o" };
        var vanilla = recipe.Job(FineTuneStage.Vanilla, 3, 5e-4, 0.1, ["auto"]);

        Assert.Empty(ctcal.Problems());
        Assert.True(ctcal.TrainTextEncoder);
        Assert.Equal(5, ctcal.MinSnrGamma);
        Assert.NotNull(ctcal.EmaDecay);
        Assert.Equal("cosine", ctcal.LrSchedule);
        Assert.Equal(0.1, ctcal.PixelWeight, 12);
        Assert.Equal(0.05, ctcal.SemanticWeight, 12);
        Assert.Equal(0.01, ctcal.BalanceWeight, 12);
        Assert.Equal(FineTuneJob.Defaults.ReconstructionWeight, ctcal.ReconstructionWeight);
        // Vanilla differs only in the method (and the weights it does not use).
        Assert.Equal(ctcal with
        {
            Method = "vanilla", Model = null, Data = null, Out = null,
            PixelWeight = FineTuneJob.Defaults.PixelWeight, SemanticWeight = FineTuneJob.Defaults.SemanticWeight, BalanceWeight = FineTuneJob.Defaults.BalanceWeight,
        }, vanilla);
        var shuffled = recipe.Job(FineTuneStage.Ctcal, 3, 5e-4, 0.1, ["auto"], j => j with { Teacher = "shuffled" });
        Assert.Equal("shuffled", shuffled.Teacher);
        Assert.Equal(0.1, shuffled.PixelWeight);
    }

    [Fact]
    public void TheWeakBaseIsTheBaseRecipeWithAShorterScheduleAndNoStop()
    {
        var settings = new StudySettings { OutputFolder = _dir, BaseModel = _dir, WeakBaseSteps = 600 };
        var recipe = BaseRecipeInfo.Read(Path.Combine(TestPaths.RepoRoot, "assets", "base-model")).UnetArguments;
        Assert.Equal("8000", recipe[recipe.ToList().IndexOf("--steps") + 1]); // the shipped chain's first command

        var args = WeakBaseStudyStage.TrainingArguments(recipe, settings).ToList();

        Assert.Equal("600", args[args.IndexOf("--steps") + 1]);
        Assert.Equal("60", args[args.IndexOf("--warmup") + 1]); // the recipe's 100, capped at a tenth of the schedule
        Assert.Equal("1e-3", args[args.IndexOf("--lr") + 1]);
        Assert.Equal("32", args[args.IndexOf("--batch-size") + 1]);
        Assert.DoesNotContain("--stop-at", args);
        var small = WeakBaseStudyStage.TrainingArguments(recipe, settings with { WeakBaseBatchSize = 4 }).ToList();
        Assert.Equal("4", small[small.IndexOf("--batch-size") + 1]);
        Assert.Throws<ArgumentException>(() => (settings with { WeakBaseSteps = 0 }).Validate());
    }

    [Fact]
    public async Task EveryStageRunsTinyAndAKilledStageResumesModelByModel()
    {
        string baseModel = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        var settings = new StudySettings { OutputFolder = Path.Combine(_dir, "study"), BaseModel = baseModel, Threads = 1, Parallel = 2 }.ForQuick() with
        {
            DatasetCount = 32, ProbeRecords = 2, GorsPromptsPerCategory = 2, SamplingSteps = 4,
            Recipe = StudyRecipe.Quick with { Steps = 2, Warmup = 1, BatchSize = 2, AlignEvery = 1 },
            SweepGorsLearningRates = [1e-3], SweepCtcalLearningRates = [1e-3], SweepCtcalWeights = [0.1], WeakBaseSteps = 3, WeakBaseBatchSize = 2,
            Split = new Synthetic.PromptSplitOptions { ValidationPerCategory = 1, TestPerCategory = 1 },
        };
        var said = new List<string>();

        // Up to the weak base; a 3-step base draws noise that no GORS check passes, so its UNet and text encoder are then replaced
        // by the shipped ones' weights (the weak-* stages' plumbing is what is tested here, not the weak base's quality).
        var outcomes = (await new StudyRunner(StudyStages.Default().Take(9).ToList(), settings, said.Add).RunAsync(null, CancellationToken.None)).ToList();
        string o = settings.OutputFolder;
        string weakModel = WeakBaseStudyStage.ModelFolder(Path.Combine(o, "09-weak-base"));
        foreach (string weights in new[] { "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors" })
        {
            Assert.NotEqual(File.ReadAllBytes(Path.Combine(baseModel, weights)), File.ReadAllBytes(Path.Combine(weakModel, weights)));
            File.Copy(Path.Combine(baseModel, weights), Path.Combine(weakModel, weights), overwrite: true);
        }
        outcomes.AddRange((await new StudyRunner(StudyStages.Default(), settings, said.Add).RunAsync(null, CancellationToken.None)).Skip(9));

        Assert.All(outcomes, o => Assert.Equal(StudyStageStatus.Ran, o.Status));
        var choice = SweepStudyStage.Choice.Read(Path.Combine(o, "04-sweep"));
        Assert.Equal((1e-3, 1e-3, 0.1), (choice.GorsLr, choice.CtcalLr, choice.CtcalWeight));
        Assert.StartsWith("premise:", choice.Layers[0], StringComparison.Ordinal);
        var main = StudyModels.ReadAll(Path.Combine(o, "05-main"));
        Assert.Equal(["base", "gors-ctcal-s1", "gors-ctcal-s2", "gors-s1", "gors-s2"], main.Select(m => m.Model.Id));
        Assert.All(main, m => Assert.Equal(3, m.Images.Count)); // 3 test prompts x 1 image seed
        Assert.All(main.Where(m => m.Model.Id.StartsWith("gors-ctcal", StringComparison.Ordinal)), m => Assert.NotNull(m.Measures!.MedianGradRatio));
        Assert.True(File.Exists(Path.Combine(o, "05-main", MainStudyStage.GridFile)));
        Assert.Equal(AblationStudyStage.Variants.Count, StudyModels.ReadAll(Path.Combine(o, "06-ablations")).Count);
        Assert.Equal(3, StudyModels.ReadAll(Path.Combine(o, "07-ground-truth")).Count);
        // The second setting: a weak base trained by the stage, then premise, GORS data and the main comparison on it.
        Assert.Equal(["weak-base", "weak-premise", "weak-gors-data", "weak-main"], outcomes.Skip(8).Select(x => x.Stage));
        Assert.True(File.Exists(Path.Combine(weakModel, "unet", "diffusion_pytorch_model.safetensors")));
        Assert.False(Directory.Exists(Path.Combine(weakModel, "checkpoints")));
        var weakArguments = System.Text.Json.JsonSerializer.Deserialize<List<string>>(File.ReadAllText(Path.Combine(o, "09-weak-base", WeakBaseStudyStage.RequestFile)))!;
        Assert.Equal("3", weakArguments[weakArguments.IndexOf("--steps") + 1]);
        Assert.Contains(weakModel, File.ReadAllText(Path.Combine(o, "11-weak-gors-data", GorsDataStudyStage.CandidatesFolder, GorsDataStudyStage.RequestFile)), StringComparison.Ordinal);
        var weakMain = StudyModels.ReadAll(Path.Combine(o, "12-weak-main"));
        Assert.Equal(["base", "gors-ctcal-s1", "gors-ctcal-s2", "gors-s1", "gors-s2"], weakMain.Select(m => m.Model.Id));
        Assert.All(weakMain.Where(m => m.Model.Job is not null), m => Assert.Contains("10-weak-premise", m.Model.Job!.Layers[0], StringComparison.Ordinal));
        var ceiling = outcomes.Single(x => x.Stage == "ceiling").Done!;
        Assert.InRange(ceiling.Summary["binding.round_trip"], 0.5, 1);
        Assert.Equal(1, ceiling.Summary["overall.clean"]);
        string report = File.ReadAllText(Path.Combine(o, StudyReport.FileName));
        foreach (string expected in new[] { "**Verdict, GORS + CTCal against GORS** (", "| GORS + CTCal vs GORS | 2 |", "| shuffled teacher vs GORS + CTCal | 1 |",
            "| renders: oracle vs vanilla | 1 |", "Chosen: GORS lr 0.001", "05-main/grid.png", "Evaluator ceiling", "Premise: a noun's attention mass",
            "**Verdict on the weak base, GORS + CTCal against GORS** (", "Premise on the weak base: a noun's", "12-weak-main/grid.png", "A weaker base: the shipped base's UNet recipe" })
        {
            Assert.Contains(expected, report, StringComparison.Ordinal);
        }

        // As if killed in the main stage after all but one model: only that model runs again, and it comes out the same.
        var before = StudyModels.Read(Path.Combine(o, "05-main"), ["gors-ctcal-s2"])[0];
        File.Delete(StudyModels.ResultFile(Path.Combine(o, "05-main"), "gors-ctcal-s2"));
        foreach (string stage in new[] { "05-main", "06-ablations", "07-ground-truth", "08-ceiling", "09-weak-base", "10-weak-premise", "11-weak-gors-data", "12-weak-main" }) File.Delete(Path.Combine(o, stage, StudyDone.FileName));
        said.Clear();
        await new StudyRunner(StudyStages.Default(), settings, said.Add).RunAsync("main", CancellationToken.None);
        Assert.Contains(said, l => l.Contains("05-main: 5 models, 4 already evaluated, 1 to run", StringComparison.Ordinal));
        var after = StudyModels.Read(Path.Combine(o, "05-main"), ["gors-ctcal-s2"])[0];
        Assert.Equal(before.Images.Select(i => (i.Prompt, i.Seed, i.Primary, i.Overall)), after.Images.Select(i => (i.Prompt, i.Seed, i.Primary, i.Overall)));
    }

    [Fact]
    public async Task TheMainComparisonTakesTheStudysChoiceInsteadOfSweeping()
    {
        string baseModel = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        var settings = new StudySettings { OutputFolder = Path.Combine(_dir, "main"), BaseModel = baseModel, Threads = 1, Parallel = 2 }.ForQuick() with
        {
            DatasetCount = 32, ProbeRecords = 2, GorsPromptsPerCategory = 2, SamplingSteps = 4, MainSeeds = [1], AblationSeeds = [1],
            Recipe = StudyRecipe.Quick with { Steps = 2, Warmup = 1, BatchSize = 2, AlignEvery = 1 },
            Split = new Synthetic.PromptSplitOptions { ValidationPerCategory = 1, TestPerCategory = 1 },
        };

        var outcomes = await new StudyRunner(StudyStages.Comparison(), settings, _ => { }).RunAsync(null, CancellationToken.None);

        Assert.Equal(["world", "premise", "gors-data", "sweep", "main", "ceiling"], outcomes.Select(x => x.Stage));
        var choice = SweepStudyStage.Choice.Read(Path.Combine(settings.OutputFolder, "04-sweep"));
        Assert.Equal(ChosenRecipeStudyStage.Committed, (choice.GorsLr, choice.CtcalLr, choice.CtcalWeight));
        Assert.Empty(StudyModels.ReadAll(Path.Combine(settings.OutputFolder, "04-sweep"))); // nothing was fine-tuned to choose
        Assert.Equal(3, StudyModels.ReadAll(Path.Combine(settings.OutputFolder, "05-main")).Count);
        string report = File.ReadAllText(Path.Combine(settings.OutputFolder, StudyReport.FileName));
        Assert.Contains("Not swept in this run", report, StringComparison.Ordinal);
        Assert.Contains("**Verdict, GORS + CTCal against GORS** (", report, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheSd3ComparisonGeneratesFineTunesAndScoresThroughThePluginWithExportedSd3Models()
    {
        // The SD3-style base of tests/data/sd3-base (its README: trained 4,000 steps, not shipped: no binding yet, but it
        // draws the requested colours, so the GORS selection keeps some of its images).
        string sd3Base = Path.Combine(TestPaths.RepoRoot, "tests", "data", "sd3-base");
        var settings = new StudySettings { OutputFolder = Path.Combine(_dir, "main-sd3"), BaseModel = sd3Base, Family = "sd3", Threads = 1, Parallel = 2 }.ForQuick() with
        {
            DatasetCount = 32, ProbeRecords = 2, GorsPromptsPerCategory = 4, SamplingSteps = 20, MainSeeds = [1], AblationSeeds = [1],
            SweepGorsLearningRates = [1e-3], SweepCtcalLearningRates = [1e-3], SweepCtcalWeights = [0.1],
            Recipe = StudyRecipe.Quick with { Steps = 2, Warmup = 1, BatchSize = 2, AlignEvery = 1 },
            Split = new Synthetic.PromptSplitOptions { ValidationPerCategory = 1, TestPerCategory = 1 },
            Layers = ["all"], // its premise probe finds no layer worth calibrating (README)
        };
        settings = settings.ForFamily();
        settings.Validate();

        var outcomes = await new StudyRunner(StudyStages.Comparison("sd3"), settings, _ => { }).RunAsync(null, CancellationToken.None);

        Assert.Equal(["world", "premise", "gors-data", "sweep", "main", "ceiling"], outcomes.Select(x => x.Stage));
        Assert.All(outcomes, o => Assert.Equal("sd3", o.Done!.Family));
        string o = settings.OutputFolder;
        // The SD3 comparison sweeps (on the validation prompts) instead of borrowing the UNet base's choice.
        var sweep = StudyModels.ReadAll(Path.Combine(o, "04-sweep"));
        Assert.Equal(["base", "ctcal-lr1e-3-w0.1-s1", "gors-lr1e-3-s1"], sweep.Select(m => m.Model.Id).Order(StringComparer.Ordinal));
        var main = StudyModels.ReadAll(Path.Combine(o, "05-main"));
        Assert.Equal(3, main.Count);
        foreach (var model in main)
        {
            Assert.NotEmpty(model.Images);
            Assert.All(model.Images, image => Assert.True(File.Exists(Path.Combine(o, "05-main", image.File)), image.File));
        }

        // Each fine-tune was a transformer LoRA (no text-encoder LoRA, no Min-SNR), exported as an SD3 ONNX model by the plugin.
        string gorsCtcal = Path.Combine(o, "05-main", StudyModels.HostFolder, "models", "gors-ctcal-s1");
        var manifest = CTCal.Core.Models.OnnxModelManifest.TryRead(gorsCtcal);
        Assert.Equal("sd3", manifest?.Family);
        Assert.True(File.Exists(Path.Combine(gorsCtcal, "transformer", "model.onnx")));
        string report = File.ReadAllText(Path.Combine(o, StudyReport.FileName));
        Assert.Contains("family sd3, images sampled with FlowMatchEulerDiscreteScheduler", report, StringComparison.Ordinal);
        Assert.Contains("given with --layers", report, StringComparison.Ordinal);
        Assert.Matches(@"Premise: a noun's attention mass inside its subject's mask at the teacher t is [0-9.]+ \(8x8\) against [0-9.]+ at the largest t and [0-9.]+ by chance", report);
        Assert.Contains("**Verdict, GORS + CTCal against GORS** (", report, StringComparison.Ordinal);
    }
}

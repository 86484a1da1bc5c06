using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// Settings of <c>ctcal-main study</c>. <see cref="ForQuick"/> gives the smoke values of <c>--quick</c>; a stage's
/// <c>done.json</c> records which of the two it ran with, and the runner refuses to mix them in one folder.
/// </summary>
public sealed record StudySettings
{
    /// <summary>The study folder (stage folders <c>&lt;nn&gt;-&lt;stage&gt;</c> and <c>study.md</c>).</summary>
    public required string OutputFolder { get; init; }

    /// <summary>Smoke settings (<c>--quick</c>).</summary>
    public bool Quick { get; init; }

    /// <summary>The base model folder (default <c>assets/base-model</c>, or <c>assets/base-model-sd3</c> for <see cref="ModelFamily.Sd3"/>).</summary>
    public required string BaseModel { get; init; }

    /// <summary>
    /// The base's family: <see cref="ModelFamily.Sd1"/> (the UNet base, DDPM) or <see cref="ModelFamily.Sd3"/> (the SD3
    /// transformer, flow matching). Every stage reads it from here; <c>done.json</c> records it, and the runner refuses
    /// to mix families in one folder.
    /// </summary>
    public string Family { get; init; } = ModelFamily.Sd1;

    /// <summary>The families a study runs on.</summary>
    public static IReadOnlyList<string> Families { get; } = [ModelFamily.Sd1, ModelFamily.Sd3];

    /// <summary>
    /// The CTCal layers of every study fine-tune when given (<c>--layers</c>: module paths, <c>all</c> or <c>auto</c>, as
    /// the trainer reads them), instead of the premise probe's choice; null (the default): the probe's. The report says
    /// which. For a base whose probe finds no layer worth calibrating, where the study otherwise stops.
    /// </summary>
    public IReadOnlyList<string>? Layers { get; init; }

    /// <summary>The sampler of every generated image: DDIM for the UNet family, the flow-match Euler sampler for SD3.</summary>
    public string Scheduler => Family == ModelFamily.Sd3 ? FlowMatchEulerDiscreteScheduler.ClassName : "ddim";

    /// <summary>Torch threads of the trainer, ONNX Runtime threads per session.</summary>
    public int Threads { get; init; } = 1;

    /// <summary>Generations at a time.</summary>
    public int Parallel { get; init; } = 2;

    /// <summary>Training images of the synthetic dataset (stage world).</summary>
    public int DatasetCount { get; init; } = 2000;

    /// <summary>Validation and test prompts per category (stage world).</summary>
    public PromptSplitOptions Split { get; init; } = new();

    /// <summary>Records of the premise probe (stage premise).</summary>
    public int ProbeRecords { get; init; } = 64;

    /// <summary>Training-split prompts per category the base generates for (stage gors-data).</summary>
    public int GorsPromptsPerCategory { get; init; } = 100;

    /// <summary>Images per GORS prompt (stage gors-data); also the most kept per prompt.</summary>
    public int GorsImagesPerPrompt { get; init; } = 4;

    /// <summary>Most GORS images kept per category.</summary>
    public int GorsCapPerCategory { get; init; } = 500;

    /// <summary>Seed of the first GORS image of each prompt (image i uses this + i); disjoint from the evaluation seeds.</summary>
    public long GorsSeedBase { get; init; } = 100_000;

    /// <summary>Sampler steps of generated images (<see cref="Scheduler"/>).</summary>
    public int SamplingSteps { get; init; } = 25;

    /// <summary>Guidance scale of generated images.</summary>
    public double Guidance { get; init; } = 5.0;

    /// <summary>Seed of the first evaluation image of each prompt (the main job's <see cref="MainJobRecipe.ImageSeedBase"/>).</summary>
    public long EvaluationImageSeedBase { get; init; } = 1000;

    /// <summary>Evaluation images per prompt the study's later stages may use (seeds reserved from GORS).</summary>
    public int EvaluationImageSeeds { get; init; } = 16;

    /// <summary>Steps of the weak base's cosine schedule (stage weak-base).</summary>
    public int WeakBaseSteps { get; init; } = 1000;

    /// <summary>Batch size of the weak base's training, or null for the base recipe's (stage weak-base).</summary>
    public int? WeakBaseBatchSize { get; init; }

    /// <summary>The fine-tune recipe of every study fine-tune (stages sweep, main, ablations, ground-truth).</summary>
    public StudyRecipe Recipe { get; init; } = new();

    /// <summary>Learning rates the sweep tries for GORS (vanilla): as many fine-tunes as CTCal gets (same search budget).</summary>
    public IReadOnlyList<double> SweepGorsLearningRates { get; init; } = [1e-4, 3e-4, 1e-3, 3e-3];

    /// <summary>Learning rates the sweep tries for CTCal (crossed with <see cref="SweepCtcalWeights"/>).</summary>
    public IReadOnlyList<double> SweepCtcalLearningRates { get; init; } = [1e-4, 3e-4];

    /// <summary>CTCal weights the sweep tries (<see cref="CTCal.Contracts.FineTuneJob.WithAlignmentWeight"/>).</summary>
    public IReadOnlyList<double> SweepCtcalWeights { get; init; } = [0.03, 0.1];

    /// <summary>Fine-tune seeds of each sweep point.</summary>
    public IReadOnlyList<long> SweepSeeds { get; init; } = [1];

    /// <summary>Fine-tune seeds of the main comparison (each trains one GORS and one GORS + CTCal model).</summary>
    public IReadOnlyList<long> MainSeeds { get; init; } = [1, 2, 3, 4, 5];

    /// <summary>Fine-tune seeds of each ablation and control (the first of <see cref="MainSeeds"/>, paired with them).</summary>
    public IReadOnlyList<long> AblationSeeds { get; init; } = [1];

    /// <summary>Fine-tune seeds of the ground-truth-render condition.</summary>
    public IReadOnlyList<long> GroundTruthSeeds { get; init; } = [1, 2];

    /// <summary>Images per prompt of the sweep's validation evaluation.</summary>
    public int ValidationImageSeeds { get; init; } = 4;

    /// <summary>Images per prompt of the test evaluation (main, ablations, ground truth).</summary>
    public int TestImageSeeds { get; init; } = 4;

    /// <summary>The reserved evaluation image seeds.</summary>
    public IReadOnlySet<long> EvaluationSeeds => Enumerable.Range(0, EvaluationImageSeeds).Select(i => EvaluationImageSeedBase + i).ToHashSet();

    /// <summary>The smoke values: 256 training images, 8 probe records, 4 GORS prompts per category x 1 image, 20 DDIM steps.</summary>
    public StudySettings ForQuick() => this with
    {
        Quick = true,
        DatasetCount = 256,
        ProbeRecords = 8,
        GorsPromptsPerCategory = 4,
        GorsImagesPerPrompt = 1,
        SamplingSteps = 20,
        Recipe = StudyRecipe.Quick,
        SweepGorsLearningRates = [1e-3, 3e-3],
        SweepCtcalLearningRates = [1e-3],
        SweepCtcalWeights = [0.03, 0.1],
        MainSeeds = [1, 2],
        AblationSeeds = [1],
        GroundTruthSeeds = [1],
        WeakBaseSteps = 40,
        WeakBaseBatchSize = 8,
        ValidationImageSeeds = 1,
        TestImageSeeds = 1,
        Split = new PromptSplitOptions { ValidationPerCategory = 3, TestPerCategory = 3 },
    };

    /// <summary>
    /// The settings for <see cref="Family"/>: for SD3 the fine-tune recipe drops the UNet base's Min-SNR weighting (a DDPM
    /// option the trainer refuses for flow matching) and the text-encoder LoRA (the trainer has none for SD3's two CLIP
    /// encoders yet). Apply after <see cref="ForQuick"/>, which replaces the recipe.
    /// </summary>
    public StudySettings ForFamily() =>
        Family == ModelFamily.Sd3 ? this with { Recipe = Recipe with { MinSnrGamma = null, TrainTextEncoder = false } } : this;

    /// <summary>
    /// The main comparison of README command 1 (<see cref="StudyStages.Comparison"/>): the study's settings with the first
    /// three of its main seeds, so that it fits 30 minutes on 2 cores; its models are the study's models of those seeds
    /// (same data, jobs and evaluation).
    /// </summary>
    public StudySettings ForComparison() => Quick ? this : this with { MainSeeds = MainSeeds.Take(3).ToList() };

    /// <summary>Checks every value; the message names the setting at fault.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException(message);
        }

        Require(Families.Contains(Family), $"--family must be one of {string.Join(", ", Families)}, got '{Family}'");
        Require(Family != ModelFamily.Sd3 || (Recipe.MinSnrGamma is null && !Recipe.TrainTextEncoder),
            "an SD3 study's recipe must leave min-snr-gamma unset (a DDPM option) and the text encoder untrained (no SD3 text-encoder LoRA yet): StudySettings.ForFamily");
        Require(Layers is null || (Layers.Count > 0 && Layers.All(l => l.Length > 0 && !l.StartsWith("premise:", StringComparison.Ordinal))),
            "--layers must name module paths, all or auto (the premise probe's choice is the default)");
        Require(Threads > 0, $"--threads must be positive, got {Threads}");
        Require(Parallel > 0, $"--parallel must be positive, got {Parallel}");
        Require(WeakBaseSteps > 0 && WeakBaseBatchSize is null or > 0, $"weak base steps and batch size must be positive, got {WeakBaseSteps} and {WeakBaseBatchSize}");
        Require(DatasetCount > 0, $"dataset count must be positive, got {DatasetCount}");
        Require(ProbeRecords > 0, $"probe records must be positive, got {ProbeRecords}");
        Require(GorsPromptsPerCategory > 0, $"GORS prompts per category must be positive, got {GorsPromptsPerCategory}");
        Require(GorsImagesPerPrompt > 0, $"GORS images per prompt must be positive, got {GorsImagesPerPrompt}");
        Require(SweepGorsLearningRates.Count == SweepCtcalLearningRates.Count * SweepCtcalWeights.Count,
            $"the sweep must give both methods the same number of fine-tunes: {SweepGorsLearningRates.Count} GORS learning rates, {SweepCtcalLearningRates.Count} x {SweepCtcalWeights.Count} CTCal points");
        Require(MainSeeds.Count > 0 && MainSeeds.Distinct().Count() == MainSeeds.Count, "main seeds must be distinct and at least one");
        Require(AblationSeeds.All(MainSeeds.Contains) && GroundTruthSeeds.Count > 0 && SweepSeeds.Count > 0, "ablation seeds must be main seeds (they are paired with them)");
        Require(ValidationImageSeeds > 0 && TestImageSeeds > 0 && Math.Max(ValidationImageSeeds, TestImageSeeds) <= EvaluationImageSeeds,
            $"validation and test image seeds must be 1..{EvaluationImageSeeds} (the seeds reserved from GORS)");
        Require(SamplingSteps > 0, $"sampling steps must be positive, got {SamplingSteps}");
        Require(Guidance >= 1 && double.IsFinite(Guidance), $"guidance must be >= 1, got {Guidance}");
        long gorsLast = GorsSeedBase + GorsImagesPerPrompt - 1, evalLast = EvaluationImageSeedBase + EvaluationImageSeeds - 1;
        Require(gorsLast < EvaluationImageSeedBase || GorsSeedBase > evalLast,
            $"GORS seeds {GorsSeedBase}..{gorsLast} overlap the evaluation seeds {EvaluationImageSeedBase}..{evalLast}");
    }
}

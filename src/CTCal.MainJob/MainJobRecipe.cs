namespace CTCal.MainJob;

/// <summary>
/// The main job's recipe: every number that decides what is trained, generated and scored. The defaults here are THE
/// default recipe of <c>ctcal-main</c> (and <see cref="Quick"/> the smoke-run one); command-line options override single
/// values. The whole record is written to <c>results.json</c> and the report, so a result always names its recipe.
/// Both methods get the same data, steps, learning rate, batch, warmup and seeds; only <c>--method</c> differs.
/// </summary>
public sealed record MainJobRecipe
{
    /// <summary>Optimizer steps of every fine-tune (vanilla and CTCal alike).</summary>
    public int Steps { get; init; } = 200;

    /// <summary>
    /// Peak learning rate (constant after warmup), the same for both methods. 1e-3 from the sweep in docs/main-job.md:
    /// the best vanilla learning rate, and the best CTCal one at the swept weight below.
    /// </summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>Images per optimizer step.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Linear warmup steps.</summary>
    public int Warmup { get; init; } = 10;

    /// <summary>Fine-tune seeds; each seed trains one vanilla and one CTCal model.</summary>
    public IReadOnlyList<long> Seeds { get; init; } = new long[] { 1, 2, 3 };

    /// <summary>
    /// Scale of the CTCal alignment weights, applied with <see cref="CTCal.Contracts.FineTuneJob.WithAlignmentWeight"/>
    /// (the trainer's default weights times this; a scale of 1 is the trainer's defaults). 0.01 from the
    /// sweep in docs/main-job.md: on this base, weights of 0.1 to 1 lowered binding at every learning rate tried.
    /// </summary>
    public double CtcalWeight { get; init; } = 0.01;

    /// <summary>Images per prompt and model; image i uses seed <see cref="ImageSeedBase"/> + i.</summary>
    public int ImageSeeds { get; init; } = 2;

    /// <summary>First image seed.</summary>
    public long ImageSeedBase { get; init; } = 1000;

    /// <summary>Evaluation prompts per category (null: all of eval_prompts.json); half held-out where possible.</summary>
    public int? PromptsPerCategory { get; init; }

    /// <summary>Sampler of the evaluation images.</summary>
    public string Scheduler { get; init; } = "ddim";

    /// <summary>Sampler steps of the evaluation images.</summary>
    public int SamplingSteps { get; init; } = 25;

    /// <summary>Classifier-free guidance scale of the evaluation images.</summary>
    public double Guidance { get; init; } = 5.0;

    /// <summary>Training and generation resolution (the base model's native size).</summary>
    public int Resolution { get; init; } = 64;

    /// <summary>Training images of the synthetic dataset (the base model's dataset: <c>base dataset --count 2000</c>).</summary>
    public int DatasetCount { get; init; } = 2000;

    /// <summary>The smoke-run recipe of <c>--quick</c>: a few steps, two seeds, four prompts per category, whole job in minutes.</summary>
    public static MainJobRecipe Quick { get; } = new()
    {
        Steps = 20,
        Warmup = 2,
        Seeds = new long[] { 1, 2 },
        ImageSeeds = 2,
        PromptsPerCategory = 4,
        SamplingSteps = 20,
    };

    /// <summary>Checks every value; the message names the option at fault.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok)
            {
                throw new ArgumentException(message);
            }
        }

        Require(Steps > 0, $"--steps must be positive, got {Steps}");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"--lr must be a positive number, got {LearningRate}");
        Require(BatchSize > 0, $"--batch-size must be positive, got {BatchSize}");
        Require(Warmup >= 0, $"--warmup must be >= 0, got {Warmup}");
        Require(Seeds.Count > 0, "--seeds needs at least one seed");
        Require(Seeds.Distinct().Count() == Seeds.Count, $"--seeds has a repeated seed ({string.Join(",", Seeds)})");
        Require(CtcalWeight >= 0 && double.IsFinite(CtcalWeight), $"--ctcal-weight must be >= 0, got {CtcalWeight}");
        Require(ImageSeeds > 0, $"--image-seeds must be positive, got {ImageSeeds}");
        Require(PromptsPerCategory is null or > 0, $"--prompts must be positive, got {PromptsPerCategory}");
        Require(SamplingSteps > 0, $"--sampling-steps must be positive, got {SamplingSteps}");
        Require(Guidance >= 1 && double.IsFinite(Guidance), $"--guidance must be >= 1, got {Guidance}");
        Require(Resolution > 0 && Resolution % 8 == 0, $"--resolution must be a positive multiple of 8, got {Resolution}");
        Require(DatasetCount > 0, $"dataset count must be positive, got {DatasetCount}");
    }
}

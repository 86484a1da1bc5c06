using CTCal.Contracts;

namespace CTCal.MainJob.Study;

/// <summary>
/// The study's fine-tune recipe, the one every study fine-tune (GORS and CTCal alike) starts from: the base model's own
/// objective (the UNet base's v-prediction with min-SNR 5 weighting, as it was trained; the SD3 base's flow matching), LoRA rank 4 on the denoiser's attention and
/// on the text encoder (as GORS and CTCal fine-tune), warmup then cosine decay to 0, EMA of the trainable weights, the
/// study measures (alignment to the teacher and per-term gradient norms) every <see cref="AlignEvery"/> steps for both
/// methods. Only the method, the learning rate, the CTCal weight, the seed and a named variant's settings differ between
/// runs.
/// </summary>
public sealed record StudyRecipe
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 200;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Linear warmup steps before the cosine decay.</summary>
    public int Warmup { get; init; } = 20;

    /// <summary>LoRA rank (UNet attention and text encoder).</summary>
    public int LoraRank { get; init; } = 4;

    /// <summary>
    /// Min-SNR-gamma of the loss weighting (the UNet base's own: 5); null for a flow-matching (SD3) base, which the
    /// trainer weights by its own scheme (<see cref="StudySettings.ForFamily"/> clears it).
    /// </summary>
    public double? MinSnrGamma { get; init; } = 5;

    /// <summary>
    /// LoRA on the text encoder too (the UNet base's recipe). False for SD3: the trainer has no LoRA for its two CLIP
    /// encoders yet, so an SD3 study fine-tunes the transformer's joint attention only (<see cref="StudySettings.ForFamily"/>).
    /// </summary>
    public bool TrainTextEncoder { get; init; } = true;

    /// <summary>EMA decay of the trainable weights (time constant about 1 / (1 - decay) steps).</summary>
    public double EmaDecay { get; init; } = 0.99;

    /// <summary>Study measures every N steps (<see cref="FineTuneJob.AlignEvery"/>).</summary>
    public int AlignEvery { get; init; } = 10;

    /// <summary>Training resolution (the base's native size).</summary>
    public int Resolution { get; init; } = 64;

    /// <summary>The smoke recipe of <c>--quick</c>.</summary>
    public static StudyRecipe Quick { get; } = new() { Steps = 6, Warmup = 2, BatchSize = 4, AlignEvery = 3 };

    /// <summary>
    /// The trainer job of one study fine-tune: this recipe, <paramref name="method"/> (<c>vanilla</c> or <c>ctcal</c>),
    /// the learning rate, the seed and, for CTCal, the alignment terms at <paramref name="weight"/> times their defaults
    /// (<see cref="FineTuneJob.WithAlignmentWeight"/>) on <paramref name="layers"/>; then <paramref name="variant"/>
    /// (an ablation's changes, applied last).
    /// </summary>
    public FineTuneJob Job(string method, long seed, double lr, double weight, IReadOnlyList<string> layers, Func<FineTuneJob, FineTuneJob>? variant = null)
    {
        var job = new FineTuneJob
        {
            Method = method,
            Steps = Steps,
            BatchSize = BatchSize,
            Lr = lr,
            LrSchedule = "cosine",
            Warmup = Warmup,
            LoraRank = LoraRank,
            TrainTextEncoder = TrainTextEncoder,
            MinSnrGamma = MinSnrGamma,
            EmaDecay = EmaDecay,
            Resolution = Resolution,
            Seed = seed,
            SaveEvery = 0,
            AlignEvery = AlignEvery,
            Layers = layers,
        };
        if (method == FineTuneStage.Ctcal) job = job.WithAlignmentWeight(weight);
        return variant is null ? job : variant(job);
    }
}

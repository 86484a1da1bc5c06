using CTCal.Trainer.Calibration;

namespace CTCal.Trainer.Training;

/// <summary>Fine-tuning method: CTCal adds the calibration term; vanilla is the same loop with it off.</summary>
public enum TrainingMethod { Ctcal, Vanilla }

/// <summary>Everything a training run is configured with (the CLI and <c>--config</c> JSON fill it).</summary>
public sealed record TrainingOptions
{
    public TrainingMethod Method { get; init; } = TrainingMethod.Ctcal;
    /// <summary>LoRA settings; ignored when <see cref="FullFineTune"/>.</summary>
    public LoraOptions Lora { get; init; } = new();
    /// <summary>Train every UNet parameter instead of LoRA adapters.</summary>
    public bool FullFineTune { get; init; }
    public int Steps { get; init; } = 1000;
    public int BatchSize { get; init; } = 1;
    public int GradientAccumulation { get; init; } = 1;
    public double LearningRate { get; init; } = 1e-4;
    public LrScheduleKind LrSchedule { get; init; } = LrScheduleKind.Constant;
    public int WarmupSteps { get; init; }
    public double WeightDecay { get; init; } = 1e-2;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double AdamEpsilon { get; init; } = 1e-8;
    /// <summary>Max global gradient norm; 0 disables clipping.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>EMA decay of the trainable weights; null disables EMA.</summary>
    public double? EmaDecay { get; init; }
    public double NoiseOffset { get; init; }
    /// <summary>Min-SNR-γ; null disables the weighting.</summary>
    public double? MinSnrGamma { get; init; }
    public long Seed { get; init; } = 42;
    /// <summary>Checkpoint every N optimizer steps (0: only at the end).</summary>
    public int SaveEvery { get; init; } = 500;
    /// <summary>Validation images every N steps (0: never).</summary>
    public int ValidateEvery { get; init; }
    public IReadOnlyList<string> ValidationPrompts { get; init; } = [];
    public int ValidationSteps { get; init; } = 20;
    public string ValidationScheduler { get; init; } = "ddim";
    public double ValidationGuidance { get; init; } = 7.5;
    /// <summary>Optimizer steps skipped in a row for a non-finite loss or gradient before the run stops as diverged.</summary>
    public int MaxNonFiniteSteps { get; init; } = 5;

    /// <summary>CTCal: teacher timestep t_tea (the paper uses 0 for SD 2.1).</summary>
    public int TeacherTimestep { get; init; }
    /// <summary>CTCal loss weights, distance, tau, map resolution.</summary>
    public CtcalLossOptions Ctcal { get; init; } = new();
    /// <summary>CTCal layers: <c>auto</c> (cross-attention maps at 1/2 and 1/4 of the latent side, else all), <c>all</c>, or module paths.</summary>
    public IReadOnlyList<string> Layers { get; init; } = ["auto"];

    public void Validate()
    {
        static void Positive(long v, string name) { if (v <= 0) throw new ArgumentOutOfRangeException(name, v, $"{name} must be positive"); }
        Positive(Steps, "steps");
        Positive(BatchSize, "batch-size");
        Positive(GradientAccumulation, "grad-accum");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException("lr", LearningRate, "lr must be a positive number");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException("warmup", WarmupSteps, "warmup must be >= 0");
        if (SaveEvery < 0) throw new ArgumentOutOfRangeException("save-every", SaveEvery, "save-every must be >= 0");
        if (ValidateEvery < 0) throw new ArgumentOutOfRangeException("validate-every", ValidateEvery, "validate-every must be >= 0");
        static void Finite(double v, string name, double min, double max, string range)
        {
            if (!(v >= min && v <= max) || !double.IsFinite(v)) throw new ArgumentOutOfRangeException(name, v, $"{name} must be a finite number {range} (got {v})");
        }
        Finite(WeightDecay, "weight-decay", 0, double.MaxValue, ">= 0");
        Finite(MaxGradNorm, "max-grad-norm", 0, double.MaxValue, ">= 0 (0: off)");
        Finite(NoiseOffset, "noise-offset", 0, 1, "in [0, 1]");
        if (MinSnrGamma is { } gamma) Finite(gamma, "min-snr-gamma", double.Epsilon, double.MaxValue, "> 0");
        Finite(Beta1, "beta1", 0, 1 - 1e-12, "in [0, 1)");
        Finite(Beta2, "beta2", 0, 1 - 1e-12, "in [0, 1)");
        Finite(AdamEpsilon, "adam-epsilon", double.Epsilon, 1, "in (0, 1]");
        Finite(ValidationGuidance, "guidance", 0, 100, "in [0, 100]");
        if (!CTCal.Core.Schedulers.SchedulerFactory.Names.Contains(ValidationScheduler))
            throw new ArgumentException($"validation-scheduler '{ValidationScheduler}' is not one of {string.Join(", ", CTCal.Core.Schedulers.SchedulerFactory.Names)}", "validation-scheduler");
        if (ValidationSteps is < 1 or > 1000) throw new ArgumentOutOfRangeException("validation-steps", ValidationSteps, $"validation-steps must be in [1, 1000] (got {ValidationSteps})");
        if (MaxNonFiniteSteps <= 0) throw new ArgumentOutOfRangeException("max-nan-steps", MaxNonFiniteSteps, "max-nan-steps must be positive");
        if (TeacherTimestep < 0) throw new ArgumentOutOfRangeException("teacher-t", TeacherTimestep, "teacher-t must be >= 0");
        if (EmaDecay is { } d && !(d > 0 && d < 1)) throw new ArgumentOutOfRangeException("ema-decay", d, $"ema-decay must be in (0, 1) (got {d})");
        if (!FullFineTune) Lora.Validate();
        Ctcal.Validate();
        if (Layers.Count == 0) throw new ArgumentException("layers must name at least one attention layer, 'auto' or 'all'", "layers");
    }
}

using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Trainer.Calibration;

namespace CTCal.Trainer.Training;

/// <summary>
/// Where CTCal's teacher maps come from: the model itself at t_tea (the method), another sample's (the shuffled-teacher
/// control) or the dataset's subject masks (the oracle upper bound).
/// </summary>
public enum TeacherSource { Model, Shuffled, Oracle }

/// <summary>
/// How the CTCal teacher timestep is chosen: <see cref="Fixed"/> (<see cref="TrainingOptions.TeacherTimestep"/>) or
/// <see cref="Below"/> (flow models: per calibrated sample, drawn from the training distribution below its student timestep).
/// </summary>
public enum TeacherSampling { Fixed, Below }

/// <summary>Fine-tuning method: CTCal adds the calibration term; vanilla is the same loop with it off.</summary>
public enum TrainingMethod { Ctcal, Vanilla }

/// <summary>
/// Everything a training run is configured with, typed for the training loop. A job file becomes one through
/// <see cref="FromJob"/>; the defaults are the job's (<see cref="FineTuneJob.Defaults"/>).
/// </summary>
public sealed record TrainingOptions
{
    private static readonly FineTuneJob D = FineTuneJob.Defaults;

    public TrainingMethod Method { get; init; } = TrainingMethod.Ctcal;
    /// <summary>LoRA settings; ignored when <see cref="FullFineTune"/>.</summary>
    public LoraOptions Lora { get; init; } = new();
    /// <summary>Train every UNet parameter instead of LoRA adapters.</summary>
    public bool FullFineTune { get; init; }
    /// <summary>A LoRA file to continue (<see cref="InitialLora"/>); null: fresh adapters on the default targets.</summary>
    public string? InitialLora { get; init; }
    /// <summary>Gradient checkpointing of the UNet's resnet and transformer blocks (<see cref="Networks.UNet2DConditionModel.GradientCheckpointing"/>).</summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>Cache VAE posteriors per image and (text encoder frozen) text embeddings per caption in memory.</summary>
    public bool CacheEncodings { get; init; }
    public int Steps { get; init; } = D.Steps;
    public int BatchSize { get; init; } = D.BatchSize;
    public int GradientAccumulation { get; init; } = D.GradAccum;
    public double LearningRate { get; init; } = D.Lr;
    public LrScheduleKind LrSchedule { get; init; } = LrScheduleKind.Constant;
    public int WarmupSteps { get; init; }
    public double WeightDecay { get; init; } = D.WeightDecay;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double AdamEpsilon { get; init; } = 1e-8;
    /// <summary>Max gradient norm, applied to the UNet (+ text encoder) parameters and to the attention autoencoder's separately; 0 disables clipping.</summary>
    public double MaxGradNorm { get; init; } = D.MaxGradNorm;
    /// <summary>EMA decay of the trainable weights; null disables EMA.</summary>
    public double? EmaDecay { get; init; }
    public double NoiseOffset { get; init; }
    /// <summary>Min-SNR-γ; null disables the weighting.</summary>
    public double? MinSnrGamma { get; init; }
    public long Seed { get; init; } = D.Seed;
    /// <summary>Checkpoint every N optimizer steps (0: only at the end).</summary>
    public int SaveEvery { get; init; } = D.SaveEvery;
    /// <summary>Validation images every N steps (0: never).</summary>
    public int ValidateEvery { get; init; }
    /// <summary>
    /// Alignment and per-term gradient-norm measures on step 1 and every N-th step (0: off); they never change the trained
    /// weights (<see cref="TrainingRun"/>: StudyMeasures).
    /// </summary>
    public int AlignEvery { get; init; }
    public IReadOnlyList<string> ValidationPrompts { get; init; } = [];
    public int ValidationSteps { get; init; } = D.ValidationSteps;
    public string ValidationScheduler { get; init; } = D.ValidationScheduler;
    public double ValidationGuidance { get; init; } = D.Guidance;
    /// <summary>Optimizer steps skipped in a row for a non-finite loss or gradient before the run stops as diverged.</summary>
    public int MaxNonFiniteSteps { get; init; } = D.MaxNanSteps;

    /// <summary>
    /// Flow-matching models (SD3): the weighting scheme of timestep sampling and loss weighting (diffusers' SD3 script;
    /// default logit_normal). The shift is the model scheduler's own. Unused by DDPM models.
    /// </summary>
    public FlowMatchingOptions FlowMatching { get; init; } = new();

    /// <summary>
    /// CTCal: teacher timestep t_tea (the paper uses 0 for SD 2.1). Flow models read it on their 0..T flow-timestep scale
    /// and use at least the smallest training timestep (<see cref="FlowTrainingObjective.TeacherTimestep"/>).
    /// </summary>
    public int TeacherTimestep { get; init; }
    /// <summary>CTCal: how the teacher timestep is chosen (<see cref="Training.TeacherSampling"/>); default fixed.</summary>
    public TeacherSampling TeacherSampling { get; init; } = TeacherSampling.Fixed;
    /// <summary>CTCal: where the teacher maps come from (<see cref="TeacherSource"/>).</summary>
    public TeacherSource Teacher { get; init; } = TeacherSource.Model;
    /// <summary>CTCal loss weights, distance, tau, map resolution.</summary>
    public CtcalLossOptions Ctcal { get; init; } = new();
    /// <summary>CTCal layers: <c>auto</c> (cross-attention maps at 1/2 and 1/4 of the latent side, else all), <c>all</c>, or module paths.</summary>
    public IReadOnlyList<string> Layers { get; init; } = D.Layers;

    /// <summary>
    /// The options of a fine-tune job. The job is validated here (<see cref="FineTuneJob.Validate"/>, the one check of its
    /// values); options made in code are the caller's to get right.
    /// </summary>
    public static TrainingOptions FromJob(FineTuneJob job)
    {
        job.Validate();
        return new TrainingOptions
        {
            Method = job.Method == "vanilla" ? TrainingMethod.Vanilla : TrainingMethod.Ctcal,
            Lora = new LoraOptions
            {
                Rank = job.LoraRank, Alpha = job.LoraAlpha, Dropout = job.LoraDropout, TextEncoder = job.TrainTextEncoder,
                Format = job.LoraFormat == "kohya" ? LoraSpelling.Kohya : LoraSpelling.Peft,
            },
            FullFineTune = job.Full,
            InitialLora = job.InitLora is null ? null : Path.GetFullPath(job.InitLora),
            GradientCheckpointing = job.GradientCheckpointing,
            CacheEncodings = job.CacheEncodings,
            Steps = job.Steps,
            BatchSize = job.BatchSize,
            GradientAccumulation = job.GradAccum,
            LearningRate = job.Lr,
            LrSchedule = job.LrSchedule == "cosine" ? LrScheduleKind.Cosine : LrScheduleKind.Constant,
            WarmupSteps = job.Warmup,
            WeightDecay = job.WeightDecay,
            MaxGradNorm = job.MaxGradNorm,
            EmaDecay = job.EmaDecay,
            NoiseOffset = job.NoiseOffset,
            MinSnrGamma = job.MinSnrGamma,
            Seed = job.Seed,
            SaveEvery = job.SaveEvery,
            ValidateEvery = job.ValidateEvery,
            AlignEvery = job.AlignEvery,
            ValidationPrompts = job.ValidationPrompts,
            ValidationSteps = job.ValidationSteps,
            ValidationScheduler = job.ValidationScheduler,
            ValidationGuidance = job.Guidance,
            MaxNonFiniteSteps = job.MaxNanSteps,
            TeacherTimestep = job.TeacherT,
            TeacherSampling = job.TeacherSampling == "below" ? TeacherSampling.Below : TeacherSampling.Fixed,
            FlowMatching = new FlowMatchingOptions { WeightingScheme = job.WeightingScheme },
            Teacher = job.Teacher switch { "shuffled" => TeacherSource.Shuffled, "oracle" => TeacherSource.Oracle, _ => TeacherSource.Model },
            Layers = job.Layers,
            Ctcal = new CtcalLossOptions
            {
                PixelWeight = job.PixelWeight,
                SemanticWeight = job.SemanticWeight,
                ReconstructionWeight = job.ReconstructionWeight,
                BalanceWeight = job.BalanceWeight,
                Tau = job.Tau,
                Distance = job.Distance switch { "l1" => MapDistance.L1, "kl" => MapDistance.Kl, _ => MapDistance.Mse },
                MapResolution = job.MapResolution,
                ConstantTimeWeight = job.TimeWeighting == "constant",
            },
        };
    }
}

namespace CTCal.Contracts;

/// <summary>
/// A fine-tune job: the one contract between whoever starts a fine-tune (a plugin, a host, the main job, a person with a
/// text editor) and <c>ctcal-train train</c>. On disk it is one JSON object whose keys are the trainer's long option names
/// without dashes (<c>{"steps": 500, "lora-rank": 8, "validation-prompts": ["a cat"]}</c>), read and written only by
/// <see cref="FineTuneJobJson"/>; the trainer takes it as <c>--config</c>, and values given on its command line win.
/// The defaults are written here and nowhere else; <see cref="Validate"/> is the one check of every value that does not
/// need the model (the trainer adds the checks that do: teacher timestep below the schedule's length, resolution a
/// multiple of the VAE factor, the sampler name).
/// </summary>
public sealed record FineTuneJob
{
    /// <summary>The values of a job nobody changed.</summary>
    public static readonly FineTuneJob Defaults = new();

    /// <summary>Accepted values of <see cref="Method"/>.</summary>
    public static readonly IReadOnlyList<string> Methods = ["ctcal", "vanilla"];
    /// <summary>Accepted values of <see cref="LoraFormat"/>.</summary>
    public static readonly IReadOnlyList<string> LoraFormats = ["peft", "kohya"];
    /// <summary>Accepted values of <see cref="LrSchedule"/>.</summary>
    public static readonly IReadOnlyList<string> LrSchedules = ["constant", "cosine"];
    /// <summary>Accepted values of <see cref="Distance"/>.</summary>
    public static readonly IReadOnlyList<string> Distances = ["mse", "l1", "kl"];
    /// <summary>Accepted values of <see cref="Teacher"/>.</summary>
    public static readonly IReadOnlyList<string> Teachers = ["model", "shuffled", "oracle"];
    /// <summary>Accepted values of <see cref="WeightingScheme"/> (diffusers' SD3 script's <c>--weighting_scheme</c>).</summary>
    public static readonly IReadOnlyList<string> WeightingSchemes = ["logit_normal", "mode", "sigma_sqrt", "cosmap", "none"];
    /// <summary>Accepted values of <see cref="TeacherSampling"/>.</summary>
    public static readonly IReadOnlyList<string> TeacherSamplings = ["fixed", "below"];
    /// <summary>Accepted values of <see cref="TimeWeighting"/>.</summary>
    public static readonly IReadOnlyList<string> TimeWeightings = ["linear", "constant"];
    /// <summary>Accepted values of <see cref="Progress"/>.</summary>
    public static readonly IReadOnlyList<string> ProgressModes = ["auto", "bar", "plain", "json", "none"];

    /// <summary>What a model predicts (a single-file model's <see cref="PredictionType"/>).</summary>
    public static readonly IReadOnlyList<string> PredictionTypes = ["epsilon", "v_prediction", "sample"];

    /// <summary>Smallest and largest training resolution.</summary>
    public const int MinResolution = 8, MaxResolution = 4096;

    // Inputs and output.
    /// <summary>
    /// Diffusers model folder to fine-tune (required), or an original single-file SD 1.x/2.x checkpoint (<c>.safetensors</c>,
    /// read without converting; see <see cref="Tokenizer"/>, <see cref="ModelConfig"/>, <see cref="PredictionType"/>, <see cref="Ema"/>).
    /// </summary>
    public string? Model { get; init; }
    /// <summary>Single-file model: folder with the CLIP BPE files (vocab.json, merges.txt); single files carry no tokenizer.</summary>
    public string? Tokenizer { get; init; }
    /// <summary>Single-file model: a diffusers folder whose configs (and tokenizer/) are used instead of the derived ones.</summary>
    public string? ModelConfig { get; init; }
    /// <summary>Single-file model: epsilon, v_prediction or sample (default: SD 1.x epsilon, SD 2.x v_prediction).</summary>
    public string? PredictionType { get; init; }
    /// <summary>Single-file model: train from the EMA UNet weights (<c>model_ema.*</c>).</summary>
    public bool Ema { get; init; }
    /// <summary>Dataset folder: <c>metadata.jsonl</c> or images with same-name <c>.txt</c> captions (required).</summary>
    public string? Data { get; init; }
    /// <summary>Output folder (required); must not be, contain or lie inside <see cref="Model"/> or <see cref="Data"/>.</summary>
    public string? Out { get; init; }
    /// <summary>Checkpoint file to resume from, or <c>latest</c>.</summary>
    public string? Resume { get; init; }
    /// <summary>Fail on any bad dataset record instead of skipping it.</summary>
    public bool Strict { get; init; }

    // Method and adapters.
    /// <summary><c>ctcal</c> (diffusion loss plus the calibration term) or <c>vanilla</c> (diffusion loss only).</summary>
    public string Method { get; init; } = "ctcal";
    public int LoraRank { get; init; } = 4;
    /// <summary>LoRA alpha; null: the rank (scale 1).</summary>
    public double? LoraAlpha { get; init; }
    public double LoraDropout { get; init; }
    /// <summary>Key spelling of the written LoRA file: <c>peft</c> or <c>kohya</c>.</summary>
    public string LoraFormat { get; init; } = "peft";
    /// <summary>
    /// A LoRA file to continue training (peft/diffusers or kohya keys): the adapters are attached to exactly its modules
    /// and start from its weights; its rank and alpha must equal <see cref="LoraRank"/> and <see cref="LoraAlpha"/>.
    /// </summary>
    public string? InitLora { get; init; }
    /// <summary>Also put LoRA on the text encoder's self-attention.</summary>
    public bool TrainTextEncoder { get; init; }
    /// <summary>Full fine-tuning of every UNet parameter instead of LoRA.</summary>
    public bool Full { get; init; }
    /// <summary>
    /// Recompute each UNet resnet and transformer block in backward instead of keeping its activations: less memory, about
    /// one more UNet forward of time per step, the same gradients.
    /// </summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>
    /// Keep each image's VAE posterior (mean and log-variance) and, when the text encoder has no LoRA, each caption's text
    /// embedding in memory after their first encoding, instead of encoding them again every time they are drawn.
    /// </summary>
    public bool CacheEncodings { get; init; }

    // Optimisation.
    public int Steps { get; init; } = 1000;
    public int BatchSize { get; init; } = 1;
    public int GradAccum { get; init; } = 1;
    /// <summary>Peak learning rate.</summary>
    public double Lr { get; init; } = 1e-4;
    public string LrSchedule { get; init; } = "constant";
    public int Warmup { get; init; }
    public double WeightDecay { get; init; } = 1e-2;
    /// <summary>Gradient-clipping norm, applied to the UNet (+ text encoder) parameters and to CTCal's attention autoencoder separately; 0 turns clipping off.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>EMA decay of the trainable weights; null: no EMA.</summary>
    public double? EmaDecay { get; init; }
    public double NoiseOffset { get; init; }
    /// <summary>Min-SNR-gamma loss weighting; null: off.</summary>
    public double? MinSnrGamma { get; init; }
    public int Resolution { get; init; } = 512;
    /// <summary>Seed of weight init, noise, timesteps and data order.</summary>
    public long Seed { get; init; } = 42;
    /// <summary>Non-finite steps in a row before the run stops as diverged.</summary>
    public int MaxNanSteps { get; init; } = 5;

    // Checkpoints and validation images.
    /// <summary>Checkpoint every N steps; 0: only at the end.</summary>
    public int SaveEvery { get; init; } = 500;
    /// <summary>Validation images every N steps; 0: only at the end when prompts are given.</summary>
    public int ValidateEvery { get; init; }
    /// <summary>
    /// Study measures (alignment of the student maps to the model teacher's, per-term gradient norms) on step 1 and every
    /// N-th step, for both methods on the same steps and samples; 0: off. They never change the trained weights.
    /// </summary>
    public int AlignEvery { get; init; } = 10;
    public IReadOnlyList<string> ValidationPrompts { get; init; } = [];
    public int ValidationSteps { get; init; } = 20;
    public string ValidationScheduler { get; init; } = "ddim";
    /// <summary>Classifier-free guidance of validation images.</summary>
    public double Guidance { get; init; } = 7.5;

    // CTCal.
    /// <summary>Teacher timestep t_tea (the paper uses 0 for SD 2.1).</summary>
    public int TeacherT { get; init; }
    /// <summary>
    /// Where the teacher maps come from: <c>model</c> (the method: the model's own maps at <see cref="TeacherT"/>),
    /// <c>shuffled</c> (a control: the teacher maps of another sample of the batch, so the term regularises without
    /// calibrating) or <c>oracle</c> (an upper bound: the dataset's per-subject masks).
    /// </summary>
    public string Teacher { get; init; } = "model";
    /// <summary>
    /// Flow-matching models (SD3): how training timesteps are drawn and the loss weighted, as diffusers' SD3 script's
    /// <c>--weighting_scheme</c> (logit_normal, mode, sigma_sqrt, cosmap, none). Ignored by DDPM models.
    /// </summary>
    public string WeightingScheme { get; init; } = "logit_normal";
    /// <summary>
    /// How the teacher timestep is chosen: <c>fixed</c> (<see cref="TeacherT"/>; for flow models at least the smallest
    /// training timestep) or <c>below</c> (flow models only: per sample, drawn from the training distribution below the
    /// student's timestep).
    /// </summary>
    public string TeacherSampling { get; init; } = "fixed";
    /// <summary>
    /// Where the nouns of records without <c>subjects</c> come from: <c>lexicon</c> (the bundled lexicon and rules) or
    /// <c>llm:&lt;folder&gt;</c> (a local ONNX Runtime GenAI model folder asked for each caption's subjects, answers
    /// validated against the caption with the lexicon as the fallback, and cached beside the dataset).
    /// </summary>
    public string Subjects { get; init; } = "lexicon";
    /// <summary>lambda1, pixel-level alignment.</summary>
    public double PixelWeight { get; init; } = 1.0;
    /// <summary>lambda2, semantic-level (autoencoder code) alignment.</summary>
    public double SemanticWeight { get; init; } = 0.5;
    /// <summary>lambda3, the attention autoencoder's reconstruction.</summary>
    public double ReconstructionWeight { get; init; } = 0.5;
    /// <summary>lambda4, subject balancing.</summary>
    public double BalanceWeight { get; init; } = 0.1;
    public string Distance { get; init; } = "mse";
    /// <summary>
    /// How a sample's CTCal term is weighted by its student timestep: <c>linear</c> (the method: t_stu / T) or
    /// <c>constant</c> (an ablation: every timestep weighs 1).
    /// </summary>
    public string TimeWeighting { get; init; } = "linear";
    /// <summary>Subject-balancing margin tau.</summary>
    public double Tau { get; init; } = 0.05;
    /// <summary>Side the maps are resized to; null: the largest calibrated layer.</summary>
    public int? MapResolution { get; init; }
    /// <summary><c>auto</c>, <c>all</c>, or attn2 module paths.</summary>
    public IReadOnlyList<string> Layers { get; init; } = ["auto"];

    // Process.
    /// <summary>Torch CPU threads; 0: the library default.</summary>
    public int Threads { get; init; }
    /// <summary>Progress output of the trainer process (<c>json</c> for a host following it).</summary>
    public string Progress { get; init; } = "auto";

    /// <summary>Two jobs are equal when every value is, lists item by item (the job file they write is the same).</summary>
    public bool Equals(FineTuneJob? other) =>
        other is not null && string.Equals(FineTuneJobJson.ToJson(this), FineTuneJobJson.ToJson(other), StringComparison.Ordinal);

    /// <inheritdoc/>
    public override int GetHashCode() => FineTuneJobJson.ToJson(this).GetHashCode(StringComparison.Ordinal);

    /// <summary>
    /// The CTCal alignment terms (pixel, semantic, subject balancing) at <paramref name="weight"/> times their defaults,
    /// keeping their 1 : 0.5 : 0.1 ratio; the autoencoder's reconstruction weight is left as it is. This is the one place the
    /// ratio lives: a single "CTCal weight" (the main job's <c>--ctcal-weight</c>) means this.
    /// </summary>
    public FineTuneJob WithAlignmentWeight(double weight) => this with
    {
        PixelWeight = Defaults.PixelWeight * weight,
        SemanticWeight = Defaults.SemanticWeight * weight,
        BalanceWeight = Defaults.BalanceWeight * weight,
    };

    /// <summary>The problems of this job, each naming the key and the value at fault; empty when it can run.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        void Check(bool ok, string message)
        {
            if (!ok) problems.Add(message);
        }

        static bool Finite(double v, double min, double max = double.MaxValue) => double.IsFinite(v) && v >= min && v <= max;
        static string F(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        void OneOf(string value, IReadOnlyList<string> allowed, string key) =>
            Check(allowed.Contains(value), $"{key} '{value}' is not one of {string.Join(", ", allowed)}");

        Check(!string.IsNullOrWhiteSpace(Model), "model is required");
        Check(!string.IsNullOrWhiteSpace(Data), "data is required");
        Check(!string.IsNullOrWhiteSpace(Out), "out is required");
        OneOf(Method, Methods, "method");
        if (PredictionType is { } prediction) OneOf(prediction, PredictionTypes, "prediction-type");
        OneOf(LoraFormat, LoraFormats, "lora-format");
        OneOf(LrSchedule, LrSchedules, "lr-schedule");
        OneOf(Distance, Distances, "distance");
        OneOf(Progress, ProgressModes, "progress");
        OneOf(Teacher, Teachers, "teacher");
        OneOf(TeacherSampling, TeacherSamplings, "teacher-sampling");
        OneOf(WeightingScheme, WeightingSchemes, "weighting-scheme");
        Check(Subjects == "lexicon" || (Subjects.StartsWith("llm:", StringComparison.Ordinal) && Subjects.Length > 4),
            $"subjects '{Subjects}' must be 'lexicon' or 'llm:<GenAI model folder>'");
        OneOf(TimeWeighting, TimeWeightings, "time-weighting");
        if (!Full)
        {
            Check(LoraRank > 0, $"lora-rank must be positive (got {LoraRank})");
            Check(LoraAlpha is null || Finite(LoraAlpha.Value, double.Epsilon), $"lora-alpha must be positive (got {F(LoraAlpha ?? 0)})");
            Check(Finite(LoraDropout, 0, 1) && LoraDropout < 1, $"lora-dropout must be in [0, 1) (got {F(LoraDropout)})");
        }
        Check(InitLora is null || !Full, "init-lora continues a LoRA and cannot be combined with full");
        Check(InitLora is null || !string.IsNullOrWhiteSpace(InitLora), "init-lora must name a LoRA .safetensors file");

        Check(Steps > 0, $"steps must be positive (got {Steps})");
        Check(BatchSize > 0, $"batch-size must be positive (got {BatchSize})");
        Check(GradAccum > 0, $"grad-accum must be positive (got {GradAccum})");
        Check(Finite(Lr, double.Epsilon), $"lr must be a positive number (got {F(Lr)})");
        Check(Warmup >= 0, $"warmup must be >= 0 (got {Warmup})");
        Check(Finite(WeightDecay, 0), $"weight-decay must be a finite number >= 0 (got {F(WeightDecay)})");
        Check(Finite(MaxGradNorm, 0), $"max-grad-norm must be a finite number >= 0 (0: off) (got {F(MaxGradNorm)})");
        Check(EmaDecay is null || (EmaDecay > 0 && EmaDecay < 1), $"ema-decay must be in (0, 1) (got {F(EmaDecay ?? 0)})");
        Check(Finite(NoiseOffset, 0, 1), $"noise-offset must be a finite number in [0, 1] (got {F(NoiseOffset)})");
        Check(MinSnrGamma is null || Finite(MinSnrGamma.Value, double.Epsilon), $"min-snr-gamma must be a finite number > 0 (got {F(MinSnrGamma ?? 0)})");
        Check(Resolution is >= MinResolution and <= MaxResolution, $"resolution {Resolution} is outside [{MinResolution}, {MaxResolution}]");
        Check(MaxNanSteps > 0, $"max-nan-steps must be positive (got {MaxNanSteps})");
        Check(SaveEvery >= 0, $"save-every must be >= 0 (got {SaveEvery})");
        Check(ValidateEvery >= 0, $"validate-every must be >= 0 (got {ValidateEvery})");
        Check(AlignEvery >= 0, $"align-every must be >= 0 (0: off) (got {AlignEvery})");
        Check(ValidationSteps is >= 1 and <= 1000, $"validation-steps must be in [1, 1000] (got {ValidationSteps})");
        Check(Finite(Guidance, 0, 100), $"guidance must be a finite number in [0, 100] (got {F(Guidance)})");
        Check(TeacherT >= 0, $"teacher-t must be >= 0 (got {TeacherT})");
        foreach (var (key, value) in new[] { ("pixel-weight", PixelWeight), ("semantic-weight", SemanticWeight), ("reconstruction-weight", ReconstructionWeight), ("balance-weight", BalanceWeight), ("tau", Tau) })
        {
            Check(Finite(value, 0), $"{key} must be a finite value >= 0 (got {F(value)})");
        }

        Check(MapResolution is null or >= 4, $"map-resolution must be at least 4 (got {MapResolution})");
        Check(Layers.Count > 0, "layers must name at least one attention layer, 'auto' or 'all'");
        Check(Threads >= 0, $"threads must be >= 0, got {Threads}");
        return problems;
    }

    /// <summary>Throws <see cref="ArgumentException"/> listing every problem (see <see cref="Problems"/>).</summary>
    public void Validate()
    {
        var problems = Problems();
        if (problems.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", problems));
        }
    }
}

namespace CTCal.Trainer.Training;

/// <summary>What one optimizer step did. Loss parts are means over the step's micro-batches.</summary>
public sealed record StepReport
{
    public long Step { get; init; }
    public int TotalSteps { get; init; }
    public double Loss { get; init; }
    public double Diffusion { get; init; }
    public double Ctcal { get; init; }
    public double Pixel { get; init; }
    public double Semantic { get; init; }
    public double Reconstruction { get; init; }
    public double Balance { get; init; }
    public double LearningRate { get; init; }
    /// <summary>
    /// L2 norm of the step's gradient over the UNet (+ text-encoder) trainable parameters, BEFORE clipping (the attention
    /// autoencoder is not in it: it is clipped separately, <see cref="AutoencoderGradNorm"/>).
    /// </summary>
    public double GradNorm { get; init; }
    /// <summary>CTCal only: L2 norm of the attention autoencoder's gradient before its own clipping (null for vanilla).</summary>
    public double? AutoencoderGradNorm { get; init; }
    /// <summary>True when the step was skipped for a non-finite loss or gradient.</summary>
    public bool Skipped { get; init; }
    public int Nouns { get; init; }
    /// <summary>Samples of this step trained with the diffusion loss only (no noun, or t_stu ≤ t_tea).</summary>
    public int DiffusionOnlySamples { get; init; }
    public double Seconds { get; init; }
    /// <summary>
    /// Measured steps only (<see cref="TrainingOptions.AlignEvery"/>; null otherwise, or when no sample of the step has a noun
    /// and t_stu &gt; t_tea): mean over the measured nouns of KL(teacher || student) of the noun maps read as spatial
    /// distributions, against the model's own teacher at t_tea, for both methods.
    /// </summary>
    public double? AlignKl { get; init; }
    /// <summary>Measured steps only: mean over the measured nouns of the cosine similarity of student and teacher noun maps.</summary>
    public double? AlignCos { get; init; }
    /// <summary>Measured steps only: nouns the alignment measure averaged over (0: none qualified).</summary>
    public int? AlignNouns { get; init; }
    /// <summary>
    /// Measured steps only: mean over the measured nouns of the student map's spatial entropy / log(pixels) (1: uniform,
    /// content-free; a low <see cref="AlignKl"/> with an entropy near 1 is agreement on nothing).
    /// </summary>
    public double? AlignEntropy { get; init; }
    /// <summary>
    /// Measured steps only: L2 norm of the gradient of the diffusion loss alone w.r.t. the UNet (+ text-encoder) trainable
    /// parameters, as it enters the step (before clipping; summed over micro-batches).
    /// </summary>
    public double? GradDiffusion { get; init; }
    /// <summary>Measured CTCal steps only: the same for the CTCal alignment term alone (pixel + semantic + balance, weighted).</summary>
    public double? GradCtcal { get; init; }
    /// <summary>Measured CTCal steps only: L2 norm of the reconstruction term's gradient w.r.t. the attention autoencoder (the only parameters it reaches).</summary>
    public double? GradReconstruction { get; init; }
}

/// <summary>Facts reported once when training starts.</summary>
public sealed record TrainingStart(int TotalSteps, long StartStep, int Records, int SkippedRecords, int RecordsWithoutNouns,
    int TrainableParameters, IReadOnlyList<string> CalibratedLayers, string Method);

/// <summary>Receives training progress (console bar, JSON lines, log). Called on the training thread.</summary>
public interface ITrainingObserver
{
    void Started(TrainingStart start);
    void StepDone(StepReport report);
    void CheckpointSaved(long step, string path);
    void ValidationSaved(long step, string path);
    /// <summary>A warning or note (level: info, warn).</summary>
    void Message(string level, string text);
}

/// <summary>The run stopped because too many steps in a row had a non-finite loss or gradient.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>The summary of a finished (or cancelled) run.</summary>
public sealed record TrainingResult(long Steps, int SkippedSteps, int DiffusionOnlySamples, string? LastCheckpoint, string? FinalWeights, bool Cancelled);

/// <summary>Renders validation images for a step; returns the written file.</summary>
public interface ITrainingValidator
{
    string Validate(long step, string outputFolder);
}

internal sealed class NullObserver : ITrainingObserver
{
    public static readonly NullObserver Instance = new();
    public void Started(TrainingStart start) { }
    public void StepDone(StepReport report) { }
    public void CheckpointSaved(long step, string path) { }
    public void ValidationSaved(long step, string path) { }
    public void Message(string level, string text) { }
}

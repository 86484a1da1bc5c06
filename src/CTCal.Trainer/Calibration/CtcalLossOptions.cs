using CTCal.Contracts;

namespace CTCal.Trainer.Calibration;

/// <summary>The distance D used by the CTCal terms.</summary>
public enum MapDistance
{
    /// <summary>Mean squared error over pixels (the default).</summary>
    Mse,
    /// <summary>Mean absolute error over pixels.</summary>
    L1,
    /// <summary>
    /// KL(teacher || student) of the maps read as spatial distributions. For the semantic term (autoencoder codes, which are
    /// not distributions) and the reconstruction term, KL falls back to MSE.
    /// </summary>
    Kl,
}

/// <summary>
/// Options of the CTCal term. The paper does not publish its distance, layers, weights or tau; the defaults are this
/// project's choice, written once in <see cref="FineTuneJob"/> (which also validates them), and every one is settable.
/// </summary>
public sealed record CtcalLossOptions
{
    /// <summary>lambda1, pixel-level alignment D(A_stu, A_tea). Default: the job's (1).</summary>
    public double PixelWeight { get; init; } = FineTuneJob.Defaults.PixelWeight;

    /// <summary>lambda2, semantic-level alignment D(f_enc(A_stu), f_enc(A_tea)). Default: the job's (0.5).</summary>
    public double SemanticWeight { get; init; } = FineTuneJob.Defaults.SemanticWeight;

    /// <summary>lambda3, autoencoder reconstruction D(f_dec(f_enc(A_tea)), A_tea). Default: the job's (0.5).</summary>
    public double ReconstructionWeight { get; init; } = FineTuneJob.Defaults.ReconstructionWeight;

    /// <summary>lambda4, subject balancing R_subject. Default: the job's (0.1).</summary>
    public double BalanceWeight { get; init; } = FineTuneJob.Defaults.BalanceWeight;

    /// <summary>tau, the margin a subject's peak may fall below the strongest subject's peak for free. Default: the job's (0.05).</summary>
    public double Tau { get; init; } = FineTuneJob.Defaults.Tau;

    /// <summary>Distance D. Default <see cref="MapDistance.Mse"/>.</summary>
    public MapDistance Distance { get; init; } = MapDistance.Mse;

    /// <summary>
    /// Side of the common map resolution all layers are resized to; null (the default) uses the largest captured layer.
    /// </summary>
    public int? MapResolution { get; init; }

    /// <summary>Number of training timesteps T of the noise schedule (t_stu / T weights the term).</summary>
    public int NumTrainTimesteps { get; init; } = 1000;

    /// <summary>An ablation: weigh every sample's term 1 instead of t_stu / T. Default false (the method).</summary>
    public bool ConstantTimeWeight { get; init; }
}

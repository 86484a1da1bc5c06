using System.Globalization;

namespace CTCal.Trainer.Training;

/// <summary>
/// Settings of the flow-matching (SD3) objective, named after the arguments of diffusers' SD3 training script
/// (examples/dreambooth/train_dreambooth_sd3.py): <c>--weighting_scheme</c>, <c>--logit_mean</c>, <c>--logit_std</c>,
/// <c>--mode_scale</c>; and the scheduler's <c>shift</c>. As in the script, one weighting scheme chooses both how the
/// training timesteps are drawn (<see cref="TimestepSampling"/>) and how the loss is weighted (<see cref="LossWeighting"/>).
/// </summary>
public sealed record FlowMatchingOptions
{
    /// <summary>logit_normal, mode (non-uniform timesteps, unweighted loss), sigma_sqrt, cosmap (uniform timesteps, weighted loss), none (uniform, unweighted).</summary>
    public static readonly IReadOnlyList<string> WeightingSchemes = ["logit_normal", "mode", "sigma_sqrt", "cosmap", "none"];

    /// <summary>The largest mode scale for which the mode density is a monotone map of [0, 1] onto itself: 2 / (pi - 2) (SD3 paper, section 3.1).</summary>
    public static readonly double MaxModeScale = 2 / (Math.PI - 2);

    /// <summary>The smallest mode scale, -1 (SD3 paper, section 3.1).</summary>
    public const double MinModeScale = -1;

    /// <summary>diffusers' <c>--weighting_scheme</c>; default logit_normal, the script's default.</summary>
    public string WeightingScheme { get; init; } = "logit_normal";

    /// <summary><c>--logit_mean</c>: the mean of the normal whose sigmoid is u (logit_normal). Default 0.</summary>
    public double LogitMean { get; init; }

    /// <summary><c>--logit_std</c>: its standard deviation (logit_normal). Default 1.</summary>
    public double LogitStd { get; init; } = 1.0;

    /// <summary><c>--mode_scale</c>: the s of u' = 1 - u - s (cos^2(pi u / 2) - 1 + u) (mode). Default 1.29.</summary>
    public double ModeScale { get; init; } = 1.29;

    /// <summary>The scheduler's static timestep shift; 3.0 as in SD3-medium's scheduler_config.json. Use the model's own value.</summary>
    public double Shift { get; init; } = 3.0;

    /// <summary>How u in [0, 1] is drawn: logit_normal, mode or uniform (<c>compute_density_for_timestep_sampling</c>).</summary>
    public string TimestepSampling => WeightingScheme switch
    {
        "logit_normal" => "logit_normal",
        "mode" => "mode",
        _ => "uniform",
    };

    /// <summary>How the per-sample loss is weighted: sigma_sqrt, cosmap or none (<c>compute_loss_weighting_for_sd3</c>).</summary>
    public string LossWeighting => WeightingScheme switch
    {
        "sigma_sqrt" => "sigma_sqrt",
        "cosmap" => "cosmap",
        _ => "none",
    };

    /// <summary>Checks every value; the exception names the option at fault (its paramName is the property's name).</summary>
    public FlowMatchingOptions Validate()
    {
        if (WeightingScheme is null || !WeightingSchemes.Contains(WeightingScheme))
            throw new ArgumentException($"{nameof(WeightingScheme)} (weighting_scheme) '{WeightingScheme}' is not one of {string.Join(", ", WeightingSchemes)}", nameof(WeightingScheme));
        if (!double.IsFinite(LogitMean))
            throw new ArgumentOutOfRangeException(nameof(LogitMean), LogitMean, $"{nameof(LogitMean)} (logit_mean) must be finite, found {F(LogitMean)}");
        if (!(LogitStd > 0 && double.IsFinite(LogitStd)))
            throw new ArgumentOutOfRangeException(nameof(LogitStd), LogitStd, $"{nameof(LogitStd)} (logit_std) must be positive and finite, found {F(LogitStd)}");
        if (!(ModeScale >= MinModeScale && ModeScale <= MaxModeScale))
            throw new ArgumentOutOfRangeException(nameof(ModeScale), ModeScale,
                $"{nameof(ModeScale)} (mode_scale) must be in [{F(MinModeScale)}, {F(MaxModeScale)}] (beyond it the mode density leaves [0, 1]), found {F(ModeScale)}");
        if (!(Shift > 0 && double.IsFinite(Shift)))
            throw new ArgumentOutOfRangeException(nameof(Shift), Shift, $"{nameof(Shift)} (shift) must be positive and finite, found {F(Shift)}");
        return this;
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}

using CTCal.Core.Diffusers;

namespace CTCal.Core.Schedulers;

/// <summary>
/// <c>scheduler/scheduler_config.json</c> of a diffusers pipeline. Fields whose diffusers default differs between
/// scheduler classes (<see cref="TimestepSpacing"/>, <see cref="SetAlphaToOne"/>, <see cref="ClipSample"/>) are null when
/// the file does not set them; each scheduler then applies its own class's default, as diffusers' <c>from_config</c> does.
/// </summary>
public sealed record SchedulerConfig
{
    public static readonly IReadOnlyList<string> BetaSchedules = ["linear", "scaled_linear", "squaredcos_cap_v2"];
    public static readonly IReadOnlyList<string> PredictionTypes = ["epsilon", "v_prediction", "sample"];
    public static readonly IReadOnlyList<string> TimestepSpacings = ["leading", "linspace", "trailing"];

    /// <summary>The file this was read from (used in error messages).</summary>
    public string File { get; init; } = "scheduler_config.json";

    /// <summary><c>_class_name</c>, e.g. "PNDMScheduler"; informative only (the sampler is chosen by name).</summary>
    public string? ClassName { get; init; }

    public int NumTrainTimesteps { get; init; } = 1000;
    public double BetaStart { get; init; } = 0.0001;
    public double BetaEnd { get; init; } = 0.02;
    /// <summary>linear, scaled_linear (Stable Diffusion) or squaredcos_cap_v2; ignored when <see cref="TrainedBetas"/> is set.</summary>
    public string BetaSchedule { get; init; } = "linear";
    public double[]? TrainedBetas { get; init; }
    /// <summary>What the model predicts: epsilon, v_prediction or sample (x0).</summary>
    public string PredictionType { get; init; } = "epsilon";
    /// <summary>leading, linspace or trailing; null = the scheduler class's default.</summary>
    public string? TimestepSpacing { get; init; }
    public int StepsOffset { get; init; }
    /// <summary>DDIM/PNDM: use alpha_cumprod 1 after the last step (else alphas_cumprod[0]); null = class default.</summary>
    public bool? SetAlphaToOne { get; init; }
    /// <summary>DDIM/DDPM: clamp predicted x0 to ±<see cref="ClipSampleRange"/>; null = class default (true).</summary>
    public bool? ClipSample { get; init; }
    public double ClipSampleRange { get; init; } = 1.0;
    public bool UseKarrasSigmas { get; init; }
    /// <summary>PNDM: skip the Runge-Kutta warm-up (PLMS only), as Stable Diffusion configs do.</summary>
    public bool SkipPrkSteps { get; init; }
    /// <summary>DDPM variance: fixed_small (default) or fixed_large.</summary>
    public string VarianceType { get; init; } = "fixed_small";
    /// <summary>DPM-Solver: 1 or 2 (the "2M" sampler).</summary>
    public int SolverOrder { get; init; } = 2;
    /// <summary>DPM-Solver second-order form: midpoint (default) or heun.</summary>
    public string SolverType { get; init; } = "midpoint";
    /// <summary>DPM-Solver: only dpmsolver++ is implemented.</summary>
    public string AlgorithmType { get; init; } = "dpmsolver++";
    /// <summary>DPM-Solver: lower the order for the last steps when there are fewer than 15.</summary>
    public bool LowerOrderFinal { get; init; } = true;
    /// <summary>DPM-Solver: first-order (Euler) update at the last step.</summary>
    public bool EulerAtFinal { get; init; }
    /// <summary>DPM-Solver: the sigma after the last step, zero (default) or sigma_min.</summary>
    public string FinalSigmasType { get; init; } = "zero";
    /// <summary>
    /// Flow matching (<c>FlowMatchEulerDiscreteScheduler</c>): the static timestep shift sigma' = shift·sigma / (1 + (shift - 1)·sigma);
    /// 1 = none, SD3-medium uses 3. Ignored by the other schedulers.
    /// </summary>
    public double Shift { get; init; } = 1.0;

    public static SchedulerConfig Load(string path) => FromJson(JsonConfig.Load(path));

    public static SchedulerConfig Parse(string json, string file = "scheduler/scheduler_config.json") => FromJson(JsonConfig.Parse(file, json));

    private static SchedulerConfig FromJson(JsonConfig c)
    {
        var config = new SchedulerConfig
        {
            File = c.File,
            ClassName = c.StringOrNull("_class_name"),
            NumTrainTimesteps = c.Int("num_train_timesteps", 1000),
            BetaStart = c.Double("beta_start", 0.0001),
            BetaEnd = c.Double("beta_end", 0.02),
            BetaSchedule = c.String("beta_schedule", "linear"),
            TrainedBetas = c.DoubleArrayOrNull("trained_betas"),
            PredictionType = c.String("prediction_type", "epsilon"),
            TimestepSpacing = c.StringOrNull("timestep_spacing"),
            StepsOffset = c.Int("steps_offset", 0),
            SetAlphaToOne = c.Has("set_alpha_to_one") ? c.Bool("set_alpha_to_one", false) : null,
            ClipSample = c.Has("clip_sample") ? c.Bool("clip_sample", false) : null,
            ClipSampleRange = c.Double("clip_sample_range", 1.0),
            UseKarrasSigmas = c.Bool("use_karras_sigmas", false),
            SkipPrkSteps = c.Bool("skip_prk_steps", false),
            VarianceType = c.String("variance_type", "fixed_small"),
            SolverOrder = c.Int("solver_order", 2),
            SolverType = c.String("solver_type", "midpoint"),
            AlgorithmType = c.String("algorithm_type", "dpmsolver++"),
            LowerOrderFinal = c.Bool("lower_order_final", true),
            EulerAtFinal = c.Bool("euler_at_final", false),
            FinalSigmasType = c.String("final_sigmas_type", "zero"),
            Shift = c.Double("shift", 1.0),
        };
        if (c.Bool("rescale_betas_zero_snr", false))
            throw c.Invalid("rescale_betas_zero_snr", "true is not supported (zero terminal SNR schedules are not implemented)");
        if (c.Bool("thresholding", false))
            throw c.Invalid("thresholding", "true is not supported (dynamic thresholding is for pixel-space models)");
        if (c.Has("use_lu_lambdas") && c.Bool("use_lu_lambdas", false))
            throw c.Invalid("use_lu_lambdas", "true is not supported");
        if (c.StringOrNull("interpolation_type") is { } interpolation && interpolation != "linear")
            throw c.Invalid("interpolation_type", $"'{interpolation}' is not supported (linear)");
        if (c.StringOrNull("timestep_type") is { } timestepType && timestepType != "discrete")
            throw c.Invalid("timestep_type", $"'{timestepType}' is not supported (discrete)");
        // FlowMatchEulerDiscreteScheduler options beyond diffusers 0.29.2's static shift.
        if (c.Bool("use_dynamic_shifting", false))
            throw c.Invalid("use_dynamic_shifting", "true is not supported (dynamic shifting needs the image-size mu at set_timesteps, which CTCal does not pass; use a static shift)");
        if (c.Bool("invert_sigmas", false)) throw c.Invalid("invert_sigmas", "true is not supported");
        if (c.Has("shift_terminal")) throw c.Invalid("shift_terminal", "is not supported (diffusers 0.29.2 has no terminal stretch)");
        if (c.Bool("use_exponential_sigmas", false)) throw c.Invalid("use_exponential_sigmas", "true is not supported");
        if (c.Bool("use_beta_sigmas", false)) throw c.Invalid("use_beta_sigmas", "true is not supported");
        if (c.Bool("stochastic_sampling", false)) throw c.Invalid("stochastic_sampling", "true is not supported");
        config.Validate(c.Invalid);
        return config;
    }

    /// <summary>Checks the values; the exception names <see cref="File"/> and the field at fault.</summary>
    public void Validate() => Validate((field, message) => new DiffusersConfigException(File, field, message));

    private void Validate(Func<string, string, DiffusersConfigException> invalid)
    {
        if (NumTrainTimesteps < 2) throw invalid("num_train_timesteps", $"must be at least 2, found {NumTrainTimesteps}");
        if (TrainedBetas is { } trained)
        {
            if (trained.Length != NumTrainTimesteps)
                throw invalid("trained_betas", $"has {trained.Length} values but num_train_timesteps is {NumTrainTimesteps}");
            for (int i = 0; i < trained.Length; i++)
                if (!(trained[i] > 0 && trained[i] < 1)) throw invalid($"trained_betas[{i}]", $"{trained[i]} is not in (0, 1)");
        }
        else
        {
            if (!BetaSchedules.Contains(BetaSchedule))
                throw invalid("beta_schedule", $"'{BetaSchedule}' is not supported ({string.Join(", ", BetaSchedules)})");
            if (BetaSchedule != "squaredcos_cap_v2")
            {
                if (!(BetaStart > 0 && BetaStart < 1)) throw invalid("beta_start", $"{BetaStart} is not in (0, 1)");
                if (!(BetaEnd > 0 && BetaEnd < 1)) throw invalid("beta_end", $"{BetaEnd} is not in (0, 1)");
            }
        }
        if (!PredictionTypes.Contains(PredictionType))
            throw invalid("prediction_type", $"'{PredictionType}' is not supported ({string.Join(", ", PredictionTypes)})");
        if (TimestepSpacing is { } spacing && !TimestepSpacings.Contains(spacing))
            throw invalid("timestep_spacing", $"'{spacing}' is not supported ({string.Join(", ", TimestepSpacings)})");
        if (StepsOffset < 0 || StepsOffset >= NumTrainTimesteps) throw invalid("steps_offset", $"{StepsOffset} is out of range");
        if (!(ClipSampleRange > 0)) throw invalid("clip_sample_range", $"must be positive, found {ClipSampleRange}");
        if (VarianceType is not ("fixed_small" or "fixed_large"))
            throw invalid("variance_type", $"'{VarianceType}' is not supported (fixed_small, fixed_large)");
        if (SolverOrder is not (1 or 2)) throw invalid("solver_order", $"{SolverOrder} is not supported (1 or 2)");
        if (SolverType is not ("midpoint" or "heun")) throw invalid("solver_type", $"'{SolverType}' is not supported (midpoint, heun)");
        if (AlgorithmType != "dpmsolver++") throw invalid("algorithm_type", $"'{AlgorithmType}' is not supported (dpmsolver++)");
        if (FinalSigmasType is not ("zero" or "sigma_min"))
            throw invalid("final_sigmas_type", $"'{FinalSigmasType}' is not supported (zero, sigma_min)");
        if (!(Shift > 0 && double.IsFinite(Shift))) throw invalid("shift", $"must be a positive finite number, found {Shift}");
    }
}

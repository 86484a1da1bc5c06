// Follows diffusers.FlowMatchEulerDiscreteScheduler (0.29.2): rectified flow (Esser et al. 2024, "Scaling Rectified Flow
// Transformers for High-Resolution Image Synthesis"), x_sigma = (1 - sigma) x0 + sigma eps, sampled with Euler's method on
// dx/dsigma = v, with the static timestep shift of SD3 (no dynamic shifting, no Karras/exponential/beta sigmas).
using CTCal.Core.Diffusers;

namespace CTCal.Core.Schedulers;

/// <summary>
/// Euler's method on the flow-matching ODE: the model predicts the velocity v = eps - x0 and x moves by
/// (sigma_next - sigma)·v per step. Timesteps are sigma·num_train_timesteps (fractional, descending).
/// </summary>
public sealed class FlowMatchEulerDiscreteScheduler : IDiffusionScheduler
{
    /// <summary>diffusers' class name, the key under which <see cref="SchedulerFactory"/> creates this scheduler.</summary>
    public const string ClassName = "FlowMatchEulerDiscreteScheduler";

    private readonly float[] _trainingSigmas;
    private double[] _timesteps;
    private float[] _sigmas;
    private int? _stepIndex;

    public FlowMatchEulerDiscreteScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (config.UseKarrasSigmas)
            throw new DiffusersConfigException(config.File, "use_karras_sigmas", $"true is not supported by {ClassName} (diffusers 0.29.2 has none)");
        Config = config;
        _trainingSigmas = TrainingSigmas(config.NumTrainTimesteps, config.Shift);
        // Before set_timesteps diffusers holds the training tables (timesteps = sigma * N, sigmas without a final 0).
        _timesteps = TimestepsOf(_trainingSigmas, config.NumTrainTimesteps);
        _sigmas = (float[])_trainingSigmas.Clone();
    }

    public SchedulerConfig Config { get; }

    public IReadOnlyList<double> Timesteps => _timesteps;

    /// <summary>After <see cref="SetTimesteps"/>: one sigma per timestep, then 0. Before: the training sigmas.</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    /// <summary>x_1 is pure noise: x_T = N(0, I).</summary>
    public float InitNoiseSigma => 1f;

    /// <summary>
    /// The training sigmas of diffusers' <c>__init__</c>, descending: s = t/N for t = N..1, shifted to
    /// shift·s / (1 + (shift - 1)·s), each operation in float32 as torch does it.
    /// </summary>
    public static float[] TrainingSigmas(int numTrainTimesteps, double shift)
    {
        if (numTrainTimesteps < 2) throw new ArgumentOutOfRangeException(nameof(numTrainTimesteps), numTrainTimesteps, "must be at least 2");
        if (!(shift > 0 && double.IsFinite(shift))) throw new ArgumentOutOfRangeException(nameof(shift), shift, "must be a positive finite number");
        float n = numTrainTimesteps, fShift = (float)shift, fShiftMinusOne = (float)(shift - 1);
        var sigmas = new float[numTrainTimesteps];
        for (int i = 0; i < sigmas.Length; i++)
        {
            float t = numTrainTimesteps - i; // np.linspace(1, N, N, dtype=float32)[::-1]: exact integers
            float s = t / n;
            sigmas[i] = fShift * s / (1f + fShiftMinusOne * s);
        }
        return sigmas;
    }

    /// <summary>The timesteps the transformer is conditioned on: sigma·N in float32 (diffusers' <c>sigmas * num_train_timesteps</c>).</summary>
    public static double[] TimestepsOf(IReadOnlyList<float> sigmas, int numTrainTimesteps)
    {
        var t = new double[sigmas.Count];
        for (int i = 0; i < t.Length; i++) t[i] = sigmas[i] * (float)numTrainTimesteps;
        return t;
    }

    /// <summary>
    /// diffusers' <c>set_timesteps</c> without custom sigmas: linspace(sigma_max·N, sigma_min·N, n) / N in float64 over the
    /// (already shifted) training range, shifted again, cast to float32, with a final sigma 0 appended.
    /// </summary>
    public void SetTimesteps(int numInferenceSteps)
    {
        int trainSteps = Config.NumTrainTimesteps;
        if (numInferenceSteps < 1) throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, "the number of inference steps must be at least 1");
        if (numInferenceSteps > trainSteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, $"more inference steps than num_train_timesteps ({trainSteps}) in {Config.File}");
        double sigmaMax = _trainingSigmas[0], sigmaMin = _trainingSigmas[^1], shift = Config.Shift;
        double[] t = ScheduleMath.Linspace(sigmaMax * trainSteps, sigmaMin * trainSteps, numInferenceSteps);
        var sigmas = new float[numInferenceSteps + 1];
        for (int i = 0; i < numInferenceSteps; i++)
        {
            double s = t[i] / trainSteps;
            sigmas[i] = (float)(shift * s / (1 + (shift - 1) * s));
        }
        sigmas[^1] = 0f;
        _sigmas = sigmas;
        _timesteps = TimestepsOf(sigmas.AsSpan(0, numInferenceSteps).ToArray(), trainSteps);
        _stepIndex = null;
    }

    /// <summary>Flow matching feeds the sample to the model unscaled (diffusers has no scale_model_input here).</summary>
    public void ScaleModelInput(Span<float> sample, double timestep)
    {
    }

    /// <summary>diffusers' <c>step</c> with churn 0: x_{i+1} = x_i + (sigma_{i+1} - sigma_i)·v, the sigma difference in float32.</summary>
    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        if (_sigmas.Length != _timesteps.Length + 1) throw new InvalidOperationException("call SetTimesteps before Step");
        _stepIndex ??= IndexOf(timestep);
        if (_stepIndex >= _timesteps.Length) throw new InvalidOperationException($"all {_timesteps.Length} steps are done; call SetTimesteps to start again");
        float dt = _sigmas[_stepIndex.Value + 1] - _sigmas[_stepIndex.Value];
        for (int i = 0; i < sample.Length; i++) sample[i] = sample[i] + dt * modelOutput[i];
        _stepIndex++;
    }

    /// <summary>
    /// diffusers' <c>scale_noise</c> (the flow-matching forward process): destination = sigma·noise + (1 - sigma)·original,
    /// sigma looked up from <paramref name="timestep"/> in the current table (the training table before SetTimesteps).
    /// </summary>
    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination)
    {
        ScheduleMath.CheckSameLength(original.Length, noise.Length, nameof(noise));
        ScheduleMath.CheckSameLength(original.Length, destination.Length, nameof(destination));
        float sigma = _sigmas[IndexOf(timestep)];
        for (int i = 0; i < original.Length; i++) destination[i] = sigma * noise[i] + (1f - sigma) * original[i];
    }

    /// <summary>diffusers' <c>index_for_timestep</c>: the exact float32 timestep (the schedule is strictly decreasing), else the nearest within 1e-4 relative.</summary>
    private int IndexOf(double timestep)
    {
        int exact = Array.IndexOf(_timesteps, timestep);
        return exact >= 0 ? exact : ScheduleMath.IndexForTimestep(_timesteps, timestep);
    }
}

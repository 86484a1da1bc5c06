// Follows diffusers.LMSDiscreteScheduler (0.27.2): linear multistep on the probability-flow ODE in sigma (k-diffusion's sample_lms).
namespace CTCal.Core.Schedulers;

/// <summary>
/// Linear multistep (Adams-Bashforth of up to order 4) in sigma: the derivatives d_j = (x_j - x0_j) / sigma_j of the
/// last steps are weighted by the integrals over [sigma_i, sigma_{i+1}] of their Lagrange basis polynomials.
/// Keeps its derivative history per instance.
/// </summary>
public sealed class LmsDiscreteScheduler : IDiffusionScheduler
{
    private readonly SigmaSchedule _schedule;
    private readonly Prediction.Kind _prediction;
    private readonly List<double[]> _derivatives = [];

    public LmsDiscreteScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _schedule = new SigmaSchedule(config, config.UseKarrasSigmas);
        _prediction = Prediction.Parse(config);
    }

    public SchedulerConfig Config { get; }

    /// <summary>Largest multistep order used (diffusers' default 4).</summary>
    public int Order { get; init; } = 4;

    public IReadOnlyList<double> Timesteps => _schedule.Timesteps;

    public IReadOnlyList<float> Sigmas => _schedule.Sigmas;

    public float InitNoiseSigma => _schedule.InitNoiseSigma;

    public void SetTimesteps(int numInferenceSteps)
    {
        _schedule.Set(numInferenceSteps);
        _derivatives.Clear();
    }

    public void ScaleModelInput(Span<float> sample, double timestep) => _schedule.ScaleModelInput(sample, timestep);

    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        if (Order < 1) throw new InvalidOperationException($"Order must be at least 1, found {Order}");
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        double sigma = _schedule.CurrentSigma(timestep);
        int stepIndex = _schedule.StepIndex!.Value;

        // 1. predicted x0 and 2. the ODE derivative d = (x - x0) / sigma, kept for the next steps
        var derivative = new double[sample.Length];
        for (int i = 0; i < sample.Length; i++)
            derivative[i] = (sample[i] - Prediction.X0FromSigma(_prediction, modelOutput[i], sample[i], sigma)) / sigma;
        _derivatives.Add(derivative);
        if (_derivatives.Count > Order) _derivatives.RemoveAt(0);

        // 3. multistep coefficients: integral over [sigma_i, sigma_{i+1}] of the Lagrange basis of each past sigma
        int order = Math.Min(stepIndex + 1, Order);
        var coefficients = new double[order];
        for (int k = 0; k < order; k++) coefficients[k] = LmsCoefficient(order, stepIndex, k);

        // 4. x_{i+1} = x_i + sum_k c_k d_{i-k}
        for (int i = 0; i < sample.Length; i++)
        {
            double update = 0;
            for (int k = 0; k < order; k++) update += coefficients[k] * _derivatives[_derivatives.Count - 1 - k][i];
            sample[i] = (float)(sample[i] + update);
        }
        _schedule.StepIndex++;
    }

    /// <summary>
    /// integral_{sigma_t}^{sigma_{t+1}} prod_{k != j} (tau - sigma_{t-k}) / (sigma_{t-j} - sigma_{t-k}) dtau. The
    /// integrand is a polynomial of degree &lt; 4, so 4-point Gauss-Legendre quadrature is exact (diffusers uses scipy's quad).
    /// </summary>
    private double LmsCoefficient(int order, int t, int j)
    {
        var s = _schedule.Sigmas;
        double Basis(double tau)
        {
            double product = 1.0;
            for (int k = 0; k < order; k++)
            {
                if (k == j) continue;
                product *= (tau - s[t - k]) / ((double)s[t - j] - s[t - k]);
            }
            return product;
        }
        double a = s[t], b = s[t + 1], mid = (a + b) / 2, half = (b - a) / 2;
        ReadOnlySpan<double> nodes = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
        ReadOnlySpan<double> weights = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];
        double sum = 0;
        for (int q = 0; q < 4; q++) sum += weights[q] * Basis(mid + half * nodes[q]);
        return sum * half;
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination) =>
        _schedule.AddNoise(original, noise, timestep, destination);
}

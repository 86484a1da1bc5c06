// Follows diffusers.PNDMScheduler (0.27.2): Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds".
namespace CTCal.Core.Schedulers;

/// <summary>
/// PNDM: pseudo linear multistep (PLMS, a 4th-order Adams-Bashforth on the noise predictions, eq. 12) with the
/// transfer function of eq. 11; the warm-up is either pseudo Runge-Kutta (PRK, eq. 13) or, with skip_prk_steps as
/// Stable Diffusion configs set it, PLMS's own lower-order start. Keeps its history per instance.
/// </summary>
public sealed class PndmScheduler : IDiffusionScheduler
{
    private const int PndmOrder = 4;
    private readonly double[] _alphasCumprod;
    private readonly double _finalAlphaCumprod;
    private readonly Prediction.Kind _prediction;
    private int[] _prkTimesteps = [];
    private int[] _timesteps = [];
    private int _numInferenceSteps;

    // History: the last model outputs (eps), the step counter, and the sample and weighted sum held during RK/warm-up.
    private readonly List<float[]> _ets = [];
    private int _counter;
    private float[]? _curSample;
    private double[]? _curModelOutput;

    public PndmScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _alphasCumprod = NoiseSchedule.AlphasCumprod(config);
        _finalAlphaCumprod = config.SetAlphaToOne ?? false ? 1.0 : _alphasCumprod[0];
        _prediction = Prediction.Parse(config);
    }

    public SchedulerConfig Config { get; }

    public IReadOnlyList<double> Timesteps { get; private set; } = [];

    public float InitNoiseSigma => 1f;

    public void SetTimesteps(int numInferenceSteps)
    {
        // The base schedule ascending (DiscreteTimesteps gives it descending).
        int[] ascending = ScheduleMath.DiscreteTimesteps(Config, numInferenceSteps, defaultSpacing: "leading").Reversed();
        _numInferenceSteps = numInferenceSteps;
        int[] plms;
        if (Config.SkipPrkSteps)
        {
            // [t_0 .. t_{n-2}, t_{n-2}, t_{n-1}] reversed: the second timestep repeats for PLMS's second-order start.
            _prkTimesteps = [];
            plms = [.. ascending[..^1], .. ascending[^2..^1], ascending[^1]];
            Array.Reverse(plms);
        }
        else
        {
            if (numInferenceSteps < PndmOrder)
                throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, "PNDM with Runge-Kutta steps needs at least 4 inference steps");
            // Each of the last four timesteps with its half-step: t, t + N/n/2; every value doubled, the ends trimmed.
            int half = Config.NumTrainTimesteps / numInferenceSteps / 2;
            var pairs = ascending[^PndmOrder..].SelectMany(t => new[] { t, t + half }).ToArray();
            var doubled = pairs[..^1].SelectMany(t => new[] { t, t }).ToArray();
            _prkTimesteps = doubled[1..^1].Reversed();
            plms = ascending[..^3].Reversed();
        }
        _timesteps = [.. _prkTimesteps, .. plms];
        Timesteps = Array.AsReadOnly(_timesteps.Select(t => (double)t).ToArray());
        _ets.Clear();
        _counter = 0;
        _curSample = null;
        _curModelOutput = null;
    }

    public void ScaleModelInput(Span<float> sample, double timestep) { }

    public void Step(ReadOnlySpan<float> modelOutput, double timestep, Span<float> sample, INoiseSource? noise = null)
    {
        if (_numInferenceSteps == 0) throw new InvalidOperationException("call SetTimesteps before Step");
        ScheduleMath.CheckSameLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        int t = ScheduleMath.TrainingIndex(timestep, Config.NumTrainTimesteps);
        // The history holds eps. diffusers keeps raw v outputs and converts their multistep combination with the current
        // sample, which mixes timesteps; converting each output where the model produced it (its own x_t and t) makes
        // v and x0 models follow exactly the trajectory of the equivalent eps model. For eps models nothing changes.
        ReadOnlySpan<float> eps = _prediction == Prediction.Kind.Epsilon ? modelOutput : ToEpsilon(modelOutput, t, sample);
        if (_counter < _prkTimesteps.Length && !Config.SkipPrkSteps) StepPrk(eps, t, sample);
        else StepPlms(eps, t, sample);
    }

    private float[] ToEpsilon(ReadOnlySpan<float> modelOutput, int timestep, ReadOnlySpan<float> sample)
    {
        double a = _alphasCumprod[timestep], sqrtA = Math.Sqrt(a), sqrtB = Math.Sqrt(1 - a);
        var eps = new float[sample.Length];
        for (int i = 0; i < eps.Length; i++) eps[i] = (float)Prediction.FromAlpha(_prediction, modelOutput[i], sample[i], sqrtA, sqrtB).Eps;
        return eps;
    }

    /// <summary>Pseudo Runge-Kutta (eq. 13): four evaluations per step, combined with weights 1/6, 1/3, 1/3, 1/6.</summary>
    private void StepPrk(ReadOnlySpan<float> modelOutput, int timestep, Span<float> sample)
    {
        int n = sample.Length;
        int diffToPrev = _counter % 2 == 1 ? 0 : Config.NumTrainTimesteps / _numInferenceSteps / 2;
        int prevTimestep = timestep - diffToPrev;
        timestep = _prkTimesteps[_counter / 4 * 4];
        _curModelOutput ??= new double[n];

        double[] combined = new double[n];
        switch (_counter % 4)
        {
            case 0:
                for (int i = 0; i < n; i++) { _curModelOutput[i] += modelOutput[i] / 6.0; combined[i] = modelOutput[i]; }
                _ets.Add(modelOutput.ToArray());
                _curSample = sample.ToArray();
                break;
            case 1:
            case 2:
                for (int i = 0; i < n; i++) { _curModelOutput[i] += modelOutput[i] / 3.0; combined[i] = modelOutput[i]; }
                break;
            default:
                for (int i = 0; i < n; i++) combined[i] = _curModelOutput[i] + modelOutput[i] / 6.0;
                Array.Clear(_curModelOutput);
                break;
        }
        ReadOnlySpan<float> from = _curSample ?? sample.ToArray();
        PrevSample(from, timestep, prevTimestep, combined, sample);
        _counter++;
    }

    /// <summary>Pseudo linear multistep (eq. 12): Adams-Bashforth combinations of the last noise predictions.</summary>
    private void StepPlms(ReadOnlySpan<float> modelOutput, int timestep, Span<float> sample)
    {
        if (!Config.SkipPrkSteps && _ets.Count < 3)
            throw new InvalidOperationException("PNDM without skip_prk_steps must run the Runge-Kutta steps first");
        int n = sample.Length;
        int prevTimestep = timestep - Config.NumTrainTimesteps / _numInferenceSteps;

        if (_counter != 1)
        {
            if (_ets.Count > 3) _ets.RemoveRange(0, _ets.Count - 3);
            _ets.Add(modelOutput.ToArray());
        }
        else
        {
            // The repeated timestep: redo the first step from the stored sample with the averaged prediction.
            prevTimestep = timestep;
            timestep += Config.NumTrainTimesteps / _numInferenceSteps;
        }

        var e = _ets;
        int k = e.Count;
        double[] combined = new double[n];
        float[] from;
        if (k == 1 && _counter == 0)
        {
            for (int i = 0; i < n; i++) combined[i] = modelOutput[i];
            _curSample = sample.ToArray();
            from = _curSample;
        }
        else if (k == 1 && _counter == 1)
        {
            for (int i = 0; i < n; i++) combined[i] = (modelOutput[i] + (double)e[^1][i]) / 2;
            from = _curSample ?? throw new InvalidOperationException("PNDM lost its warm-up sample; call SetTimesteps first");
            _curSample = null;
        }
        else if (k == 2)
        {
            for (int i = 0; i < n; i++) combined[i] = (3.0 * e[^1][i] - e[^2][i]) / 2;
            from = sample.ToArray();
        }
        else if (k == 3)
        {
            for (int i = 0; i < n; i++) combined[i] = (23.0 * e[^1][i] - 16.0 * e[^2][i] + 5.0 * e[^3][i]) / 12;
            from = sample.ToArray();
        }
        else
        {
            for (int i = 0; i < n; i++) combined[i] = (55.0 * e[^1][i] - 59.0 * e[^2][i] + 37.0 * e[^3][i] - 9.0 * e[^4][i]) / 24;
            from = sample.ToArray();
        }
        PrevSample(from, timestep, prevTimestep, combined, sample);
        _counter++;
    }

    /// <summary>
    /// The transfer function phi of eq. 11: x_{t-d} = sqrt(a_{t-d}/a_t) x_t - (a_{t-d} - a_t) eps /
    /// (a_t sqrt(1 - a_{t-d}) + sqrt(a_t (1 - a_t) a_{t-d})), with a = alpha-bar.
    /// </summary>
    private void PrevSample(ReadOnlySpan<float> sample, int timestep, int prevTimestep, double[] eps, Span<float> destination)
    {
        double alphaProdT = _alphasCumprod[timestep];
        double alphaProdPrev = prevTimestep >= 0 ? _alphasCumprod[prevTimestep] : _finalAlphaCumprod;
        double betaProdT = 1 - alphaProdT, betaProdPrev = 1 - alphaProdPrev;
        double sampleCoeff = Math.Sqrt(alphaProdPrev / alphaProdT);
        double denominator = alphaProdT * Math.Sqrt(betaProdPrev) + Math.Sqrt(alphaProdT * betaProdT * alphaProdPrev);
        for (int i = 0; i < destination.Length; i++)
            destination[i] = (float)(sampleCoeff * sample[i] - (alphaProdPrev - alphaProdT) * eps[i] / denominator);
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination) =>
        VariancePreserving.AddNoise(_alphasCumprod, original, noise, timestep, destination);
}

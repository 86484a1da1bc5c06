using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// <see cref="FlowMatchingObjective"/> (SD3's rectified flow) as an <see cref="ITrainingObjective"/>. Timesteps are the
/// flow timesteps t = sigma·T (float32, what the SD3 transformer is conditioned on); the noise level of a timestep is
/// sigma = t / T, so x_t = (1 - sigma)·x0 + sigma·noise, the target is noise - x0 and the loss weight is the weighting
/// scheme's at sigma. The CTCal teacher is fixed (<c>--teacher-t</c> on the same 0..T scale, at
/// least the smallest training timestep) or drawn below each student (<see cref="TeacherTimesteps"/>).
/// </summary>
public sealed class FlowTrainingObjective : ITrainingObjective
{
    /// <summary>The <see cref="ITrainableDiffusionModel.PredictionType"/> of flow-matching models: the velocity noise - x0.</summary>
    public const string PredictionType = "flow";

    public FlowTrainingObjective(FlowMatchingOptions options, int numTrainTimesteps = 1000)
    {
        Flow = new FlowMatchingObjective(options, numTrainTimesteps);
    }

    /// <summary>The flow-matching math it adapts.</summary>
    public FlowMatchingObjective Flow { get; }

    public int NumTrainTimesteps => Flow.NumTrainTimesteps;

    /// <summary>sigma = t / T per sample, float32.</summary>
    public Tensor Sigmas(Tensor timesteps) => timesteps.to(ScalarType.Float32) / NumTrainTimesteps;

    public Tensor SampleNoise(Tensor latents, Generator generator) => FlowMatchingObjective.SampleNoise(latents, generator);

    /// <summary>Flow timesteps drawn from the weighting scheme's density (<see cref="FlowMatchingObjective.SampleTimesteps"/>).</summary>
    public Tensor SampleTimesteps(long batch, Device device, Generator generator) => Flow.SampleTimesteps(batch, device, generator).Timesteps;

    public Tensor AddNoise(Tensor x0, Tensor noise, Tensor timesteps) => FlowMatchingObjective.AddNoise(x0, noise, Sigmas(timesteps));

    public Tensor Target(Tensor x0, Tensor noise, Tensor timesteps) => FlowMatchingObjective.Target(x0, noise);

    public Tensor Loss(Tensor prediction, Tensor target, Tensor timesteps) => Flow.Loss(prediction, target, Sigmas(timesteps));

    /// <summary>The smallest training timestep: sigma_min·T of the shifted training table (about 3 for SD3's shift 3 and T = 1000).</summary>
    public double SmallestTrainingTimestep => Flow.TrainingTimesteps[^1];

    /// <summary>
    /// The calibration threshold. Fixed: t_tea = max(<paramref name="requested"/>, <see cref="SmallestTrainingTimestep"/>), a
    /// teacher at the low end of the training distribution, so <c>--teacher-t 0</c> (the default) means the smallest
    /// training timestep, as it does for DDPM. Below: the smallest training timestep (every student above it has a
    /// training timestep below its own to draw from).
    /// </summary>
    public double TeacherTimestep(int requested, TeacherSampling sampling)
    {
        if (requested < 0 || requested >= NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(requested), requested, $"the teacher timestep must be in 0..{NumTrainTimesteps - 1}");
        return sampling == TeacherSampling.Below ? SmallestTrainingTimestep : Math.Max(requested, SmallestTrainingTimestep);
    }

    /// <summary>
    /// Fixed: <see cref="TeacherTimestep"/> for every sample. Below: for each sample, a training timestep strictly below its
    /// student timestep, drawn from the training distribution restricted to those timesteps (the weighting scheme's
    /// probability of each table index, <see cref="IndexProbabilities"/>, renormalised over the indices after the student's),
    /// one uniform number per sample from <paramref name="generator"/>.
    /// </summary>
    public Tensor TeacherTimesteps(Tensor studentTimesteps, int requested, TeacherSampling sampling, Generator generator)
    {
        int count = (int)studentTimesteps.shape[0];
        if (sampling == TeacherSampling.Fixed)
            return Timesteps(Enumerable.Repeat(TeacherTimestep(requested, sampling), count).ToList(), studentTimesteps.device);
        var students = studentTimesteps.to(ScalarType.Float32).cpu().data<float>().ToArray();
        var uniforms = rand(new long[] { count }, dtype: ScalarType.Float64, generator: generator).data<double>().ToArray();
        var probabilities = IndexProbabilities();
        var teachers = new double[count];
        for (int b = 0; b < count; b++)
        {
            int first = IndexOf(students[b]) + 1;                  // indices after the student's: smaller timesteps
            if (first >= NumTrainTimesteps) { teachers[b] = SmallestTrainingTimestep; continue; }
            double total = 0;
            for (int i = first; i < NumTrainTimesteps; i++) total += probabilities[i];
            int chosen = NumTrainTimesteps - 1;
            if (total > 0)
            {
                double target = uniforms[b] * total, sum = 0;
                for (int i = first; i < NumTrainTimesteps; i++)
                {
                    sum += probabilities[i];
                    if (sum > target) { chosen = i; break; }
                }
            }
            else
            {
                chosen = first + (int)Math.Min(NumTrainTimesteps - 1 - first, Math.Floor(uniforms[b] * (NumTrainTimesteps - first)));
            }
            teachers[b] = Flow.TrainingTimesteps[chosen];
        }
        return Timesteps(teachers, studentTimesteps.device);
    }

    /// <summary>The index of the training table whose timestep is nearest to <paramref name="timestep"/> (the table descends).</summary>
    public int IndexOf(double timestep)
    {
        var table = Flow.TrainingTimesteps;
        int lo = 0, hi = table.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (table[mid] > timestep) lo = mid + 1;
            else hi = mid;
        }
        // lo: the first index whose timestep is <= timestep; the previous one may be nearer.
        return lo > 0 && Math.Abs(table[lo - 1] - timestep) < Math.Abs(table[lo] - timestep) ? lo - 1 : lo;
    }

    private double[]? _indexProbabilities;

    /// <summary>
    /// P(index = i) under the weighting scheme's density of u (index = floor(u·N), u = 1 counted in N - 1):
    /// F((i + 1)/N) - F(i/N) with F the CDF of u: u itself (uniform), Φ((logit u - mean)/std) (logit_normal), and for mode
    /// 1 - v(u) with v(u) the inverse of the decreasing map v -> 1 - v - s(cos²(pi v/2) - 1 + v), found by bisection.
    /// </summary>
    public IReadOnlyList<double> IndexProbabilities()
    {
        if (_indexProbabilities is not null) return _indexProbabilities;
        var o = Flow.Options;
        double Cdf(double u)
        {
            if (u <= 0) return 0;
            if (u >= 1) return 1;
            switch (o.TimestepSampling)
            {
                case "logit_normal":
                    return NormalCdf((Math.Log(u / (1 - u)) - o.LogitMean) / o.LogitStd);
                case "mode":
                    double lo = 0, hi = 1;                         // Mode(v) decreases from 1 (v = 0) to 0 (v = 1)
                    for (int k = 0; k < 60; k++)
                    {
                        double mid = (lo + hi) / 2;
                        if (Mode(mid, o.ModeScale) > u) lo = mid; else hi = mid;
                    }
                    return 1 - (lo + hi) / 2;
                default:
                    return u;
            }
        }
        int n = NumTrainTimesteps;
        var p = new double[n];
        for (int i = 0; i < n; i++) p[i] = Math.Max(0, Cdf((i + 1.0) / n) - Cdf((double)i / n));
        return _indexProbabilities = p;
    }

    private static double Mode(double v, double scale) => 1 - v - scale * (Math.Pow(Math.Cos(Math.PI * v / 2), 2) - 1 + v);

    /// <summary>The standard normal CDF, 0.5·erfc(-x/√2) (erfc: Numerical Recipes' Chebyshev fit, relative error below 1.2e-7).</summary>
    private static double NormalCdf(double x)
    {
        double z = -x / Math.Sqrt(2);
        double t = 1 / (1 + 0.5 * Math.Abs(z));
        double erfc = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
            + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return 0.5 * (z >= 0 ? erfc : 2 - erfc);
    }

    /// <summary>Flow timesteps [N] (float32) in [0, T].</summary>
    public Tensor Timesteps(IReadOnlyList<double> values, Device device)
    {
        foreach (double v in values)
            if (!(v >= 0 && v <= NumTrainTimesteps))
                throw new ArgumentException($"flow timestep {v} is outside 0..{NumTrainTimesteps}", nameof(values));
        return tensor(values.Select(v => (float)v).ToArray(), device: device);
    }
}

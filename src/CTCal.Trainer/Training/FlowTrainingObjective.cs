using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// <see cref="FlowMatchingObjective"/> (SD3's rectified flow) as an <see cref="ITrainingObjective"/>. Timesteps are the
/// flow timesteps t = sigma·T (float32, what the SD3 transformer is conditioned on); the noise level of a timestep is
/// sigma = t / T, so x_t = (1 - sigma)·x0 + sigma·noise, the target is noise - x0 and the loss weight is the weighting
/// scheme's at sigma. The CTCal teacher is fixed (<see cref="TeacherTimestep"/>): <c>--teacher-t</c> on the same 0..T scale,
/// at least the smallest training timestep.
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
    /// t_tea = max(<paramref name="requested"/>, <see cref="SmallestTrainingTimestep"/>): a fixed teacher at the low end of the
    /// training distribution, so <c>--teacher-t 0</c> (the default) means the smallest training timestep, as it does for DDPM.
    /// </summary>
    public double TeacherTimestep(int requested)
    {
        if (requested < 0 || requested >= NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(requested), requested, $"the teacher timestep must be in 0..{NumTrainTimesteps - 1}");
        return Math.Max(requested, SmallestTrainingTimestep);
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

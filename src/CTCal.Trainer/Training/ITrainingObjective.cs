using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// The training objective of a model family, as the trainer uses it: the DDPM forward process of the SD UNets
/// (<see cref="DiffusionObjective"/>: integer timesteps 0..T-1, int64) or SD3's flow matching
/// (<see cref="FlowTrainingObjective"/>: float timesteps sigma·T, float32). The model chooses it
/// (<see cref="ITrainableDiffusionModel.CreateObjective"/>). Timestep tensors are [B] in the objective's own dtype and are
/// what the denoiser is conditioned on; every random draw comes from the generator passed in.
/// </summary>
public interface ITrainingObjective
{
    /// <summary>T: the number of training timesteps (the CTCal time weight is t/T).</summary>
    int NumTrainTimesteps { get; }

    /// <summary>Noise shaped like <paramref name="latents"/>.</summary>
    Tensor SampleNoise(Tensor latents, Generator generator);

    /// <summary>The student timesteps of a batch ([B]; int64 for DDPM, float32 for flow).</summary>
    Tensor SampleTimesteps(long batch, Device device, Generator generator);

    /// <summary>x_t from x0 and the noise at <paramref name="timesteps"/>.</summary>
    Tensor AddNoise(Tensor x0, Tensor noise, Tensor timesteps);

    /// <summary>What the denoiser learns to predict at <paramref name="timesteps"/>.</summary>
    Tensor Target(Tensor x0, Tensor noise, Tensor timesteps);

    /// <summary>The (weighted) batch-mean loss.</summary>
    Tensor Loss(Tensor prediction, Tensor target, Tensor timesteps);

    /// <summary>
    /// The CTCal calibration threshold for the run's <c>--teacher-t</c> <paramref name="requested"/> and
    /// <paramref name="sampling"/>, on the scale of this objective's timesteps: a sample is calibrated when its student
    /// timestep is above it. Fixed: t_tea itself (DDPM: <paramref name="requested"/>). Throws for a sampling the objective
    /// does not support.
    /// </summary>
    double TeacherTimestep(int requested, TeacherSampling sampling);

    /// <summary>
    /// The teacher timesteps [N] (this objective's dtype) of calibrated samples whose student timesteps are
    /// <paramref name="studentTimesteps"/> ([N], each above <see cref="TeacherTimestep"/>): fixed t_tea for every sample, or
    /// drawn from <paramref name="generator"/> (<see cref="TeacherSampling.Below"/>).
    /// </summary>
    Tensor TeacherTimesteps(Tensor studentTimesteps, int requested, TeacherSampling sampling, Generator generator);

    /// <summary>A timestep tensor of this objective's dtype holding <paramref name="values"/> (the teacher pass's, the premise probe's).</summary>
    Tensor Timesteps(IReadOnlyList<double> values, Device device);
}

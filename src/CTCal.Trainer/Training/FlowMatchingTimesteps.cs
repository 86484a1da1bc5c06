using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// One batch of flow-matching training timesteps drawn by <see cref="FlowMatchingObjective.SampleTimesteps"/>, all [B]:
/// <paramref name="Indices"/> (int64) into the scheduler's descending training tables; <paramref name="Timesteps"/>
/// (float32, sigma·num_train_timesteps in [1, 1000] for 1000 steps: what the SD3 transformer is conditioned on, as
/// diffusers passes <c>timestep=timesteps</c>); <paramref name="Sigmas"/> (float32, in (0, 1]: the noise level of x_t).
/// </summary>
public sealed record FlowMatchingTimesteps(Tensor Indices, Tensor Timesteps, Tensor Sigmas);

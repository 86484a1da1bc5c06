using CTCal.Core.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// The flow-matching (rectified flow) objective of SD3, as diffusers' SD3 training script
/// (examples/dreambooth/train_dreambooth_sd3.py) computes it, without output preconditioning:
/// u from <c>compute_density_for_timestep_sampling</c>; index = floor(u·N) into the scheduler's descending training tables
/// (so u near 0 is the noisiest timestep); x_t = (1 - sigma)·x0 + sigma·noise; target = noise - x0; the loss is the batch
/// mean of <c>compute_loss_weighting_for_sd3</c>'s weight times the per-sample mean squared error.
/// The tables are <see cref="FlowMatchEulerDiscreteScheduler"/>'s training sigmas and timesteps for <see cref="FlowMatchingOptions.Shift"/>.
/// All randomness comes from the <see cref="Generator"/> passed in: the same seed gives the same draws.
/// </summary>
public sealed class FlowMatchingObjective
{
    private readonly float[] _sigmas;
    private readonly float[] _timesteps;

    public FlowMatchingObjective(FlowMatchingOptions options, int numTrainTimesteps = 1000)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options.Validate();
        if (numTrainTimesteps < 2) throw new ArgumentOutOfRangeException(nameof(numTrainTimesteps), numTrainTimesteps, "must be at least 2");
        _sigmas = FlowMatchEulerDiscreteScheduler.TrainingSigmas(numTrainTimesteps, options.Shift);
        _timesteps = FlowMatchEulerDiscreteScheduler.TimestepsOf(_sigmas, numTrainTimesteps).Select(t => (float)t).ToArray();
    }

    public FlowMatchingOptions Options { get; }

    public int NumTrainTimesteps => _sigmas.Length;

    /// <summary>The training sigmas, descending from 1 (index 0) to the smallest (index N - 1).</summary>
    public IReadOnlyList<float> TrainingSigmas => _sigmas;

    /// <summary>The training timesteps sigma·N, descending from N.</summary>
    public IReadOnlyList<float> TrainingTimesteps => _timesteps;

    /// <summary>Standard normal noise shaped like <paramref name="latents"/> (SD3's script adds no noise offset).</summary>
    public static Tensor SampleNoise(Tensor latents, Generator generator) =>
        randn(latents.shape, dtype: latents.dtype, device: latents.device, generator: generator);

    /// <summary>Draws u for <paramref name="batch"/> samples and looks up their indices, timesteps and sigmas (on <paramref name="device"/>).</summary>
    public FlowMatchingTimesteps SampleTimesteps(long batch, Device device, Generator generator)
    {
        var u = SampleDensity(Options.TimestepSampling, batch, Options.LogitMean, Options.LogitStd, Options.ModeScale, generator);
        var indices = DensityToIndices(u, NumTrainTimesteps);
        return new FlowMatchingTimesteps(
            indices.to(device),
            tensor(_timesteps).index_select(0, indices).to(device),
            tensor(_sigmas).index_select(0, indices).to(device));
    }

    /// <summary>Follows diffusers' training_utils.compute_density_for_timestep_sampling: u [B] (float32, CPU, where diffusers draws it).</summary>
    /// <param name="sampling">logit_normal: u = sigmoid(N(mean, std)); mode: u = 1 - v - s·(cos²(pi·v/2) - 1 + v) for v ~ U[0, 1); uniform: u ~ U[0, 1).</param>
    public static Tensor SampleDensity(string sampling, long batch, double logitMean, double logitStd, double modeScale, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "the batch must hold at least one sample");
        switch (sampling)
        {
            case "logit_normal":
                return (randn(new[] { batch }, dtype: ScalarType.Float32, device: CPU, generator: generator) * logitStd + logitMean).sigmoid();
            case "mode":
                var v = rand(new[] { batch }, dtype: ScalarType.Float32, device: CPU, generator: generator);
                return 1 - v - modeScale * ((Math.PI * v / 2).cos().square() - 1 + v); // the script: cos(pi * u / 2) ** 2
            case "uniform":
                return rand(new[] { batch }, dtype: ScalarType.Float32, device: CPU, generator: generator);
            default:
                throw new ArgumentException($"timestep sampling '{sampling}' is not logit_normal, mode or uniform", nameof(sampling));
        }
    }

    /// <summary>
    /// The script's <c>(u * N).long()</c> as table indices [B] (int64), clamped to [0, N - 1]: u can reach 1 (mode's
    /// u' = 1 when v = 0; a float32 sigmoid of a large draw), where diffusers' lookup would index past the table.
    /// </summary>
    public static Tensor DensityToIndices(Tensor u, int numTrainTimesteps) =>
        (u.to(ScalarType.Float32) * numTrainTimesteps).floor().clamp(0, numTrainTimesteps - 1).to(ScalarType.Int64);

    private static Tensor PerSample(Tensor v, Tensor like) =>
        v.to(like.dtype).to(like.device).reshape(new long[] { -1 }.Concat(Enumerable.Repeat(1L, (int)like.dim() - 1)).ToArray());

    /// <summary>The flow-matching forward process (diffusers' <c>noisy_model_input</c>): x_t = (1 - sigma)·x0 + sigma·noise, sigma [B] per sample.</summary>
    public static Tensor AddNoise(Tensor x0, Tensor noise, Tensor sigmas)
    {
        var s = PerSample(sigmas, x0);
        return (1 - s) * x0 + s * noise;
    }

    /// <summary>The velocity the transformer learns to predict: noise - x0 (the script without <c>--precondition_outputs</c>).</summary>
    public static Tensor Target(Tensor x0, Tensor noise) => noise - x0;

    /// <summary>
    /// Follows diffusers' training_utils.compute_loss_weighting_for_sd3: per-sample weights [B] (float32) for
    /// <paramref name="weighting"/> sigma_sqrt (sigma^-2), cosmap (2 / (pi·(1 - 2 sigma + 2 sigma²))) or none (1).
    /// </summary>
    public static Tensor LossWeights(string weighting, Tensor sigmas)
    {
        var s = sigmas.to(ScalarType.Float32);
        return weighting switch
        {
            "sigma_sqrt" => s.pow(-2.0),
            "cosmap" => 2 / (Math.PI * (1 - 2 * s + 2 * s.square())),
            "none" => ones_like(s),
            _ => throw new ArgumentException($"loss weighting '{weighting}' is not sigma_sqrt, cosmap or none", nameof(weighting)),
        };
    }

    /// <summary>The script's loss: mean over the batch of weight·mean((prediction - target)²) over each sample's elements (float32).</summary>
    public static Tensor WeightedLoss(Tensor prediction, Tensor target, Tensor weights)
    {
        var perSample = (prediction.to(ScalarType.Float32) - target.to(ScalarType.Float32)).square().flatten(1).mean(new long[] { 1 }); // [B]
        if (weights.numel() != perSample.shape[0])
            throw new ArgumentException($"{weights.numel()} weights for a batch of {perSample.shape[0]}", nameof(weights));
        return (perSample * weights.to(ScalarType.Float32).to(perSample.device).flatten()).mean();
    }

    /// <summary>The per-sample loss weights of this objective's scheme at <paramref name="sigmas"/>.</summary>
    public Tensor Weights(Tensor sigmas) => LossWeights(Options.LossWeighting, sigmas);

    /// <summary>The weighted loss of this objective's scheme; <paramref name="sigmas"/> are the batch's <see cref="FlowMatchingTimesteps.Sigmas"/>.</summary>
    public Tensor Loss(Tensor prediction, Tensor target, Tensor sigmas) => WeightedLoss(prediction, target, Weights(sigmas));
}

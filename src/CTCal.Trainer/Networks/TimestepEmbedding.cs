using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.embeddings.get_timestep_embedding (the Transformer's sinusoidal position encoding, Vaswani et al. 2017).
/// <summary>Sinusoidal timestep features, as diffusers' <c>Timesteps</c> module computes them (no parameters).</summary>
public static class Timesteps
{
    /// <param name="timesteps">[B] timesteps (any numeric dtype).</param>
    /// <param name="dim">Feature width.</param>
    /// <param name="flipSinToCos">Put the cosines first (SD: true).</param>
    /// <param name="freqShift">diffusers' downscale_freq_shift (SD: 0).</param>
    /// <returns>[B, dim] fp32.</returns>
    public static Tensor Embed(Tensor timesteps, int dim, bool flipSinToCos, double freqShift, double maxPeriod = 10000)
    {
        if (timesteps.dim() != 1) throw new ArgumentException($"timesteps must be 1-D, got shape [{string.Join(", ", timesteps.shape)}]", nameof(timesteps));
        using var scope = NewDisposeScope();
        int half = dim / 2;
        var exponent = torch.arange(0, half, dtype: ScalarType.Float32, device: timesteps.device).mul(-Math.Log(maxPeriod) / (half - freqShift));
        var freqs = exponent.exp();                                                             // [half]
        var args = timesteps.to(ScalarType.Float32).unsqueeze(1).mul(freqs.unsqueeze(0));       // [B, half]
        var emb = flipSinToCos ? torch.cat([args.cos(), args.sin()], -1) : torch.cat([args.sin(), args.cos()], -1); // [B, 2*half]
        if (dim % 2 == 1) emb = functional.pad(emb, [0, 1]);
        return emb.MoveToOuterDisposeScope();
    }
}

// diffusers.models.embeddings.TimestepEmbedding (linear_1, SiLU, linear_2).
public sealed class TimestepEmbedding : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear linear_1;
    private readonly Linear linear_2;
#pragma warning restore IDE1006

    public TimestepEmbedding(int inChannels, int timeEmbedDim) : base(nameof(TimestepEmbedding))
    {
        linear_1 = Linear(inChannels, timeEmbedDim);
        linear_2 = Linear(timeEmbedDim, timeEmbedDim);
        RegisterComponents();
    }

    public ScalarType DType => linear_1.weight!.dtype;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return linear_2.forward(functional.silu(linear_1.forward(x))).MoveToOuterDisposeScope();
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Bench.Inference;

/// <summary>Seeded random weights of realistic scale (the integration tests use the same scheme).</summary>
internal static class RandomWeights
{
    /// <summary>Matrices/kernels ~ N(0, (gain/sqrt(fan_in))^2), biases ~ N(0, 0.01), norm scales ~ 1 + N(0, 0.01).</summary>
    public static void Fill(nn.Module module, int seed, double gain = 1.5)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var (name, p) in module.named_parameters())
        {
            Tensor value = name.Contains("norm", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal)
                ? randn(p.shape, generator: generator).mul(0.1).add(1.0)
                : p.dim() >= 2
                    ? randn(p.shape, generator: generator).mul(gain / Math.Sqrt(p.numel() / p.shape[0]))
                    : randn(p.shape, generator: generator).mul(0.1);
            p.copy_(value);
        }
    }
}

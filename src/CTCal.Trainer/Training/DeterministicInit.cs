using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// Re-initialises a module's parameters from an explicit generator, so that the result does not depend on torch's
/// process-wide RNG (which anything else in the process may draw from or reseed concurrently). Matrices and convolution
/// kernels get U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default bound for Linear/Conv with a = sqrt(5)); 1-D weights
/// (norm scales) are set to 1 and biases to 0.
/// </summary>
public static class DeterministicInit
{
    public static void Reset(nn.Module module, Generator generator)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (name, p) in module.named_parameters())
        {
            if (p.dim() >= 2)
            {
                double fanIn = p.numel() / (double)p.shape[0];
                double bound = 1.0 / Math.Sqrt(fanIn);
                p.uniform_(-bound, bound, generator);
            }
            else if (name.EndsWith("bias", StringComparison.Ordinal))
            {
                p.zero_();
            }
            else
            {
                p.fill_(1.0);
            }
        }
    }
}

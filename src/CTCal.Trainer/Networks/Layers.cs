using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>Layer factories with PyTorch's initial values.</summary>
internal static class Layers
{
    /// <summary>
    /// nn.GroupNorm with weight = 1 and bias = 0 set explicitly: TorchSharp 0.107's GroupNorm can leave its affine
    /// parameters uninitialised (NaN/garbage), which only shows before weights are loaded.
    /// </summary>
    public static GroupNorm GroupNorm(int groups, int channels, double eps)
    {
        var norm = nn.GroupNorm(groups, channels, eps);
        using (no_grad())
        {
            norm.weight!.fill_(1.0);
            norm.bias!.zero_();
        }
        return norm;
    }
}

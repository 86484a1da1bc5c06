using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.attention.FeedForward with activation_fn="gelu-approximate": net.0 = GELU (tanh), net.1 = Dropout, net.2 = Linear.
/// <summary>
/// The MMDiT feed-forward: <c>net.0.proj</c> (dim -> 4 x dim), tanh-approximated GELU, <c>net.2</c> (4 x dim -> dim).
/// (<see cref="FeedForward"/> is the UNet's GEGLU variant.)
/// </summary>
public sealed class GeluFeedForward : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly ModuleList<Module<Tensor, Tensor>> net;
#pragma warning restore IDE1006

    public GeluFeedForward(int dim, int mult = 4) : base(nameof(GeluFeedForward))
    {
        net = new ModuleList<Module<Tensor, Tensor>>(new GELU(dim, dim * mult), Dropout(0.0), Linear(dim * mult, dim));
        RegisterComponents();
    }

    /// <param name="x">[B, N, dim]</param>
    /// <returns>[B, N, dim]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return net[2].forward(net[0].forward(x)).MoveToOuterDisposeScope();
    }
}

// diffusers.models.activations.GELU with approximate="tanh" (a Linear `proj`, then gelu).
public sealed class GELU : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear proj;
#pragma warning restore IDE1006

    public GELU(int dimIn, int dimOut) : base(nameof(GELU))
    {
        proj = Linear(dimIn, dimOut);
        RegisterComponents();
    }

    /// <param name="x">[..., dimIn]</param>
    /// <returns>[..., dimOut]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // PyTorch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), one fused kernel.
        return functional.gelu(proj.forward(x), TorchSharp.Modules.GELU.Approximate.tanh).MoveToOuterDisposeScope();
    }
}

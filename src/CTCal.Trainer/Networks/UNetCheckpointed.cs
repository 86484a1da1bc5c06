using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>The UNet blocks' sub-block calls through <see cref="GradientCheckpointing"/> (each a unit of recomputation).</summary>
internal static class UNetCheckpointed
{
    /// <summary><paramref name="resnet"/>(x, temb).</summary>
    public static Tensor Resnet(GradientCheckpointing checkpointing, ResnetBlock2D resnet, Tensor x, Tensor temb) =>
        checkpointing.Run(resnet, a => resnet.forward(a[0]!, a[1]), x, temb);

    /// <summary><paramref name="resnet"/>(cat([x, skip], channels), temb): the concatenation is recomputed too, not kept.</summary>
    public static Tensor ConcatResnet(GradientCheckpointing checkpointing, ResnetBlock2D resnet, Tensor x, Tensor skip, Tensor temb) =>
        checkpointing.Run(resnet, a =>
        {
            using var scope = NewDisposeScope();
            return resnet.forward(torch.cat([a[0]!, a[1]!], 1), a[2]).MoveToOuterDisposeScope();
        }, x, skip, temb);

    /// <summary><paramref name="transformer"/>(x, context).</summary>
    public static Tensor Transformer(GradientCheckpointing checkpointing, Transformer2DModel transformer, Tensor x, Tensor context) =>
        checkpointing.Run(transformer, a => transformer.forward(a[0]!, a[1]!), x, context);
}

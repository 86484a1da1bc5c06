using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.resnet.ResnetBlock2D (time_embedding_norm="default", output_scale_factor, 1x1 conv_shortcut).
/// <summary>GroupNorm-SiLU-conv twice with an optional time-embedding shift and a 1x1 shortcut when channels change.</summary>
public sealed class ResnetBlock2D : Module<Tensor, Tensor?, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly Linear? time_emb_proj;
    private readonly GroupNorm norm2;
    private readonly Conv2d conv2;
    private readonly Conv2d? conv_shortcut;
#pragma warning restore IDE1006
    private readonly double _outputScale;

    /// <param name="tembChannels">Width of the time embedding, or null for the VAE's blocks (no <c>time_emb_proj</c>).</param>
    public ResnetBlock2D(int inChannels, int outChannels, int? tembChannels, int groups, double eps, double outputScaleFactor = 1.0)
        : base(nameof(ResnetBlock2D))
    {
        norm1 = Layers.GroupNorm(groups, inChannels, eps);
        conv1 = Conv2d(inChannels, outChannels, 3, padding: 1);
        if (tembChannels is int t) time_emb_proj = Linear(t, outChannels);
        norm2 = Layers.GroupNorm(groups, outChannels, eps);
        conv2 = Conv2d(outChannels, outChannels, 3, padding: 1);
        if (inChannels != outChannels) conv_shortcut = Conv2d(inChannels, outChannels, 1);
        _outputScale = outputScaleFactor;
        RegisterComponents();
    }

    /// <param name="x">[B, Cin, H, W]</param>
    /// <param name="temb">[B, T] time embedding, or null.</param>
    /// <returns>[B, Cout, H, W]</returns>
    public override Tensor forward(Tensor x, Tensor? temb)
    {
        using var scope = NewDisposeScope();
        var h = conv1.forward(functional.silu(norm1.forward(x)));
        if (time_emb_proj is not null)
        {
            if (temb is null) throw new ArgumentNullException(nameof(temb), "this resnet block needs a time embedding");
            h = h.add(time_emb_proj.forward(functional.silu(temb)).unsqueeze(-1).unsqueeze(-1)); // [B, Cout, 1, 1] broadcast
        }
        h = conv2.forward(functional.silu(norm2.forward(h)));
        var shortcut = conv_shortcut is null ? x : conv_shortcut.forward(x);
        var result = shortcut.add(h);
        if (_outputScale != 1.0) result = result.div(_outputScale);
        return result.MoveToOuterDisposeScope();
    }
}

// diffusers.models.downsampling.Downsample2D (use_conv=True).
/// <summary>Stride-2 3x3 conv. With padding 0 (the VAE) the input is first padded by (0,1,0,1), as diffusers does.</summary>
public sealed class Downsample2D : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Conv2d conv;
#pragma warning restore IDE1006
    private readonly int _padding;

    public Downsample2D(int channels, int outChannels, int padding) : base(nameof(Downsample2D))
    {
        _padding = padding;
        conv = Conv2d(channels, outChannels, 3, stride: 2, padding: padding);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (_padding == 0)
        {
            using var scope = NewDisposeScope();
            var padded = functional.pad(x, [0, 1, 0, 1]); // right and bottom
            return conv.forward(padded).MoveToOuterDisposeScope();
        }
        return conv.forward(x);
    }
}

// diffusers.models.upsampling.Upsample2D (use_conv=True, nearest interpolation).
/// <summary>Nearest-neighbour 2x (or to an explicit size) followed by a 3x3 conv.</summary>
public sealed class Upsample2D : Module<Tensor, long[]?, Tensor>
{
#pragma warning disable IDE1006
    private readonly Conv2d conv;
#pragma warning restore IDE1006

    public Upsample2D(int channels, int outChannels) : base(nameof(Upsample2D))
    {
        conv = Conv2d(channels, outChannels, 3, padding: 1);
        RegisterComponents();
    }

    /// <param name="x">[B, C, H, W]</param>
    /// <param name="size">Target [H', W'] (diffusers' upsample_size) or null for 2x.</param>
    public override Tensor forward(Tensor x, long[]? size)
    {
        using var scope = NewDisposeScope();
        var input = x;
        // Nearest upsampling of half precision is not supported everywhere; diffusers upcasts bf16 the same way.
        if (x.dtype == ScalarType.BFloat16) input = x.to(ScalarType.Float32);
        var up = size is null
            ? functional.interpolate(input, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)
            : functional.interpolate(input, size: size, mode: InterpolationMode.Nearest);
        if (up.dtype != x.dtype) up = up.to(x.dtype);
        return conv.forward(up).MoveToOuterDisposeScope();
    }
}

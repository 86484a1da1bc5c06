using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

/// <summary>Settings shared by every block of one UNet (from its config).</summary>
internal sealed record UNetBlockSettings(int TembChannels, int Groups, double Eps, int CrossAttentionDim, bool UseLinearProjection, bool UpcastAttention,
    GradientCheckpointing Checkpointing);

// diffusers.models.unets.unet_2d_blocks.CrossAttnDownBlock2D / DownBlock2D (DownBlock2D = no attentions).
/// <summary><c>resnets.N</c>, optional <c>attentions.N</c> (Transformer2DModel) and optional <c>downsamplers.0</c>.</summary>
public sealed class UNetDownBlock : Module<Tensor, Tensor, Tensor, (Tensor Hidden, Tensor[] Skips)>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Transformer2DModel>? attentions;
    private readonly ModuleList<Downsample2D>? downsamplers;
#pragma warning restore IDE1006
    private readonly GradientCheckpointing _checkpointing;

    internal UNetDownBlock(int layers, int inChannels, int outChannels, bool crossAttention, int heads, int transformerLayers,
        bool addDownsample, int downsamplePadding, UNetBlockSettings s) : base(crossAttention ? "CrossAttnDownBlock2D" : "DownBlock2D")
    {
        resnets = new ModuleList<ResnetBlock2D>(Enumerable.Range(0, layers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, s.TembChannels, s.Groups, s.Eps)).ToArray());
        if (crossAttention)
            attentions = new ModuleList<Transformer2DModel>(Enumerable.Range(0, layers)
                .Select(_ => new Transformer2DModel(heads, outChannels / heads, outChannels, transformerLayers, s.CrossAttentionDim, s.Groups,
                    s.UseLinearProjection, s.UpcastAttention)).ToArray());
        if (addDownsample) downsamplers = new ModuleList<Downsample2D>(new Downsample2D(outChannels, outChannels, downsamplePadding));
        _checkpointing = s.Checkpointing;
        RegisterComponents();
    }

    public bool HasCrossAttention => attentions is not null;
    public bool HasDownsampler => downsamplers is not null;
    public int Layers => resnets.Count;

    /// <returns>The block output and every intermediate state the up path concatenates (one per resnet, plus the downsampled one).</returns>
    public override (Tensor Hidden, Tensor[] Skips) forward(Tensor x, Tensor temb, Tensor context)
    {
        var skips = new List<Tensor>();
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            h = UNetCheckpointed.Resnet(_checkpointing, resnets[i], h, temb);
            if (attentions is not null) h = UNetCheckpointed.Transformer(_checkpointing, attentions[i], h, context);
            skips.Add(h);
        }
        if (downsamplers is not null)
        {
            h = downsamplers[0].forward(h);
            skips.Add(h);
        }
        return (h, skips.ToArray());
    }
}

// diffusers.models.unets.unet_2d_blocks.UNetMidBlock2DCrossAttn.
/// <summary><c>resnets.0</c>, then (<c>attentions.i</c>, <c>resnets.i+1</c>) pairs.</summary>
public sealed class UNetMidBlock2DCrossAttn : Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Transformer2DModel> attentions;
#pragma warning restore IDE1006
    private readonly GradientCheckpointing _checkpointing;

    internal UNetMidBlock2DCrossAttn(int channels, int heads, int transformerLayers, double outputScaleFactor, UNetBlockSettings s, int layers = 1)
        : base(nameof(UNetMidBlock2DCrossAttn))
    {
        resnets = new ModuleList<ResnetBlock2D>(Enumerable.Range(0, layers + 1)
            .Select(_ => new ResnetBlock2D(channels, channels, s.TembChannels, s.Groups, s.Eps, outputScaleFactor)).ToArray());
        attentions = new ModuleList<Transformer2DModel>(Enumerable.Range(0, layers)
            .Select(_ => new Transformer2DModel(heads, channels / heads, channels, transformerLayers, s.CrossAttentionDim, s.Groups,
                s.UseLinearProjection, s.UpcastAttention)).ToArray());
        _checkpointing = s.Checkpointing;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor temb, Tensor context)
    {
        var h = UNetCheckpointed.Resnet(_checkpointing, resnets[0], x, temb);
        for (int i = 0; i < attentions.Count; i++)
        {
            h = UNetCheckpointed.Transformer(_checkpointing, attentions[i], h, context);
            h = UNetCheckpointed.Resnet(_checkpointing, resnets[i + 1], h, temb);
        }
        return h;
    }
}

// diffusers.models.unets.unet_2d_blocks.CrossAttnUpBlock2D / UpBlock2D (UpBlock2D = no attentions).
/// <summary>
/// <c>resnets.N</c> over the channel concatenation of the running state and a skip from the down path,
/// optional <c>attentions.N</c>, optional <c>upsamplers.0</c> (nearest 2x + conv).
/// </summary>
public sealed class UNetUpBlock : Module<Tensor, Tensor[], Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Transformer2DModel>? attentions;
    private readonly ModuleList<Upsample2D>? upsamplers;
#pragma warning restore IDE1006
    private readonly GradientCheckpointing _checkpointing;

    internal UNetUpBlock(int layers, int inChannels, int prevOutputChannels, int outChannels, bool crossAttention, int heads,
        int transformerLayers, bool addUpsample, UNetBlockSettings s) : base(crossAttention ? "CrossAttnUpBlock2D" : "UpBlock2D")
    {
        resnets = new ModuleList<ResnetBlock2D>(Enumerable.Range(0, layers).Select(i =>
        {
            int skip = i == layers - 1 ? inChannels : outChannels;
            int input = i == 0 ? prevOutputChannels : outChannels;
            return new ResnetBlock2D(input + skip, outChannels, s.TembChannels, s.Groups, s.Eps);
        }).ToArray());
        if (crossAttention)
            attentions = new ModuleList<Transformer2DModel>(Enumerable.Range(0, layers)
                .Select(_ => new Transformer2DModel(heads, outChannels / heads, outChannels, transformerLayers, s.CrossAttentionDim, s.Groups,
                    s.UseLinearProjection, s.UpcastAttention)).ToArray());
        if (addUpsample) upsamplers = new ModuleList<Upsample2D>(new Upsample2D(outChannels, outChannels));
        _checkpointing = s.Checkpointing;
        RegisterComponents();
    }

    public int Layers => resnets.Count;

    /// <param name="x">[B, C, H, W] running state.</param>
    /// <param name="skips">This block's skips from the down path, in the order they were produced (the last is used first).</param>
    /// <param name="upsampleSize">Target [H, W] of the upsampler (the next block's skip size); null for 2x.</param>
    public override Tensor forward(Tensor x, Tensor[] skips, Tensor temb, Tensor context) => Forward(x, skips, temb, context, null);

    public Tensor Forward(Tensor x, Tensor[] skips, Tensor temb, Tensor context, long[]? upsampleSize)
    {
        if (skips.Length != resnets.Count)
            throw new ArgumentException($"{GetName()} needs {resnets.Count} skip tensors, got {skips.Length}", nameof(skips));
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            var skip = skips[skips.Length - 1 - i];
            h = UNetCheckpointed.ConcatResnet(_checkpointing, resnets[i], h, skip, temb); // resnet over [B, C + Cskip, H, W]
            if (attentions is not null) h = UNetCheckpointed.Transformer(_checkpointing, attentions[i], h, context);
        }
        if (upsamplers is not null) h = upsamplers[0].forward(h, upsampleSize);
        return h;
    }
}

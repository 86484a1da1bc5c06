using CTCal.Core.Diffusers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.autoencoders.autoencoder_kl.AutoencoderKL (Rombach et al. 2022, KL-regularised autoencoder).
/// <summary>
/// The SD VAE: <c>encoder</c>, <c>quant_conv</c>, <c>post_quant_conv</c>, <c>decoder</c> (SD3's VAE has neither quant conv:
/// <c>use_quant_conv</c>/<c>use_post_quant_conv</c> false). <see cref="Encode"/> gives the diagonal Gaussian's mean and
/// clamped log-variance; <see cref="Sample"/> draws from it; <see cref="Decode"/> maps latents back to images. None of these
/// applies the scaling or shift: <see cref="ScaleLatents"/> and <see cref="UnscaleLatents"/> do, and are the one place that
/// does.
/// </summary>
public sealed class AutoencoderKL : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly VaeEncoder encoder;
    private readonly VaeDecoder decoder;
    private readonly Conv2d? quant_conv;
    private readonly Conv2d? post_quant_conv;
#pragma warning restore IDE1006

    public AutoencoderKL(VaeConfig config) : base(nameof(AutoencoderKL))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        encoder = new VaeEncoder(config);
        decoder = new VaeDecoder(config);
        if (config.UseQuantConv) quant_conv = Conv2d(2 * config.LatentChannels, 2 * config.LatentChannels, 1);
        if (config.UsePostQuantConv) post_quant_conv = Conv2d(config.LatentChannels, config.LatentChannels, 1);
        RegisterComponents();
    }

    public VaeConfig Config { get; }

    /// <summary>The config's scaling_factor (see <see cref="ScaleLatents"/>).</summary>
    public double ScalingFactor => Config.ScalingFactor;

    /// <summary>The config's shift_factor, 0 when absent (SD1/2); SD3: 0.0609.</summary>
    public double ShiftFactor => Config.ShiftFactor;

    /// <summary>
    /// VAE latents to denoiser latents: (z - shift_factor) * scaling_factor, as diffusers' SD3 training scripts do (SD1/2:
    /// z * scaling_factor).
    /// </summary>
    public Tensor ScaleLatents(Tensor latents)
    {
        ArgumentNullException.ThrowIfNull(latents);
        using var scope = NewDisposeScope();
        var shifted = ShiftFactor == 0 ? latents : latents.sub(ShiftFactor);
        return shifted.mul(ScalingFactor).MoveToOuterDisposeScope();
    }

    /// <summary>Denoiser latents to VAE latents, the inverse of <see cref="ScaleLatents"/>: z / scaling_factor + shift_factor (the pipelines' decode).</summary>
    public Tensor UnscaleLatents(Tensor latents)
    {
        ArgumentNullException.ThrowIfNull(latents);
        using var scope = NewDisposeScope();
        var z = latents.div(ScalingFactor);
        return (ShiftFactor == 0 ? z : z.add(ShiftFactor)).MoveToOuterDisposeScope();
    }

    /// <param name="image">[B, 3, H, W] in [-1, 1].</param>
    /// <returns>mean and log-variance (clamped to [-30, 20]), each [B, latent, H/f, W/f].</returns>
    public (Tensor Mean, Tensor LogVar) Encode(Tensor image)
    {
        using var scope = NewDisposeScope();
        var moments = encoder.forward(image);                    // [B, 2*latent, h, w]
        if (quant_conv is not null) moments = quant_conv.forward(moments);
        var parts = moments.chunk(2, 1);
        var logvar = parts[1].clamp(-30.0, 20.0);
        return (parts[0].MoveToOuterDisposeScope(), logvar.MoveToOuterDisposeScope());
    }

    /// <summary>mean + exp(logvar / 2) * noise, with the noise drawn from <paramref name="generator"/> (diffusers' DiagonalGaussianDistribution.sample).</summary>
    public static Tensor Sample(Tensor mean, Tensor logVar, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var noise = torch.randn(mean.shape, dtype: mean.dtype, device: mean.device, generator: generator);
        return mean.add(logVar.mul(0.5).exp().mul(noise)).MoveToOuterDisposeScope();
    }

    /// <summary>Encodes and samples the latent distribution (unscaled).</summary>
    public Tensor EncodeSample(Tensor image, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var (mean, logvar) = Encode(image);
        return Sample(mean, logvar, generator).MoveToOuterDisposeScope();
    }

    /// <summary>The posterior's parameters as one tensor: mean and log-variance concatenated on the channels, [B, 2 * latent, h, w].</summary>
    public Tensor EncodePosterior(Tensor image)
    {
        using var scope = NewDisposeScope();
        var (mean, logVar) = Encode(image);
        return cat([mean, logVar], 1).MoveToOuterDisposeScope();
    }

    /// <summary>A sample of a posterior from <see cref="EncodePosterior"/>, scaled for the denoiser (<see cref="ScaleLatents"/>).</summary>
    public Tensor SampleScaled(Tensor posterior, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var parts = posterior.chunk(2, 1);
        return ScaleLatents(Sample(parts[0], parts[1], generator)).MoveToOuterDisposeScope();
    }

    /// <param name="latents">[B, latent, h, w] (unscaled: see <see cref="UnscaleLatents"/>).</param>
    /// <returns>[B, 3, h*f, w*f].</returns>
    public Tensor Decode(Tensor latents)
    {
        using var scope = NewDisposeScope();
        var z = post_quant_conv is null ? latents : post_quant_conv.forward(latents);
        return decoder.forward(z).MoveToOuterDisposeScope();
    }

    /// <summary>Reconstruction through the posterior mean.</summary>
    public override Tensor forward(Tensor image)
    {
        using var scope = NewDisposeScope();
        var (mean, _) = Encode(image);
        return Decode(mean).MoveToOuterDisposeScope();
    }
}

// diffusers.models.autoencoders.vae.Encoder (DownEncoderBlock2D blocks, UNetMidBlock2D, double_z).
public sealed class VaeEncoder : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Conv2d conv_in;
    private readonly ModuleList<VaeBlock> down_blocks;
    private readonly VaeMidBlock mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;
#pragma warning restore IDE1006

    public VaeEncoder(VaeConfig c) : base("Encoder")
    {
        int[] ch = c.BlockOutChannels;
        conv_in = Conv2d(c.InChannels, ch[0], 3, padding: 1);
        var blocks = new List<VaeBlock>();
        int output = ch[0];
        for (int i = 0; i < ch.Length; i++)
        {
            int input = output;
            output = ch[i];
            blocks.Add(VaeBlock.Down(c.LayersPerBlock, input, output, addDownsample: i < ch.Length - 1, c.NormNumGroups));
        }
        down_blocks = new ModuleList<VaeBlock>(blocks.ToArray());
        mid_block = new VaeMidBlock(ch[^1], c.NormNumGroups, c.MidBlockAddAttention);
        conv_norm_out = Layers.GroupNorm(c.NormNumGroups, ch[^1], 1e-6);
        conv_out = Conv2d(ch[^1], 2 * c.LatentChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var h = conv_in.forward(x);
        foreach (var block in down_blocks) h = block.forward(h);
        h = mid_block.forward(h);
        return conv_out.forward(functional.silu(conv_norm_out.forward(h)));
    }
}

// diffusers.models.autoencoders.vae.Decoder (UNetMidBlock2D, UpDecoderBlock2D blocks with layers_per_block + 1 resnets).
public sealed class VaeDecoder : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Conv2d conv_in;
    private readonly VaeMidBlock mid_block;
    private readonly ModuleList<VaeBlock> up_blocks;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;
#pragma warning restore IDE1006

    public VaeDecoder(VaeConfig c) : base("Decoder")
    {
        int[] ch = c.BlockOutChannels;
        int n = ch.Length;
        conv_in = Conv2d(c.LatentChannels, ch[^1], 3, padding: 1);
        mid_block = new VaeMidBlock(ch[^1], c.NormNumGroups, c.MidBlockAddAttention);
        var blocks = new List<VaeBlock>();
        int output = ch[^1];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = ch[n - 1 - i];
            blocks.Add(VaeBlock.Up(c.LayersPerBlock + 1, prev, output, addUpsample: i < n - 1, c.NormNumGroups));
        }
        up_blocks = new ModuleList<VaeBlock>(blocks.ToArray());
        conv_norm_out = Layers.GroupNorm(c.NormNumGroups, ch[0], 1e-6);
        conv_out = Conv2d(ch[0], c.OutChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor z)
    {
        var h = conv_in.forward(z);
        h = mid_block.forward(h);
        foreach (var block in up_blocks) h = block.forward(h);
        return conv_out.forward(functional.silu(conv_norm_out.forward(h)));
    }
}

// diffusers DownEncoderBlock2D / UpDecoderBlock2D: resnets without time embedding, then a down- or upsampler.
public sealed class VaeBlock : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;
    private readonly ModuleList<Upsample2D>? upsamplers;
#pragma warning restore IDE1006

    private VaeBlock(string name, int layers, int inChannels, int outChannels, int groups, Downsample2D? down, Upsample2D? up) : base(name)
    {
        resnets = new ModuleList<ResnetBlock2D>(Enumerable.Range(0, layers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, groups, 1e-6)).ToArray());
        if (down is not null) downsamplers = new ModuleList<Downsample2D>(down);
        if (up is not null) upsamplers = new ModuleList<Upsample2D>(up);
        RegisterComponents();
    }

    /// <summary>DownEncoderBlock2D; its downsampler pads (0,1,0,1) and convolves with stride 2, padding 0.</summary>
    public static VaeBlock Down(int layers, int inChannels, int outChannels, bool addDownsample, int groups) =>
        new("DownEncoderBlock2D", layers, inChannels, outChannels, groups, addDownsample ? new Downsample2D(outChannels, outChannels, 0) : null, null);

    public static VaeBlock Up(int layers, int inChannels, int outChannels, bool addUpsample, int groups) =>
        new("UpDecoderBlock2D", layers, inChannels, outChannels, groups, null, addUpsample ? new Upsample2D(outChannels, outChannels) : null);

    public override Tensor forward(Tensor x)
    {
        foreach (var resnet in resnets) x = resnet.forward(x, null);
        if (downsamplers is not null) x = downsamplers[0].forward(x);
        if (upsamplers is not null) x = upsamplers[0].forward(x, null);
        return x;
    }
}

// diffusers UNetMidBlock2D as the VAE uses it: resnets.0, attentions.0 (one head over all channels), resnets.1.
public sealed class VaeMidBlock : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<VaeAttention>? attentions;
#pragma warning restore IDE1006

    public VaeMidBlock(int channels, int groups, bool addAttention) : base("UNetMidBlock2D")
    {
        resnets = new ModuleList<ResnetBlock2D>(new ResnetBlock2D(channels, channels, null, groups, 1e-6), new ResnetBlock2D(channels, channels, null, groups, 1e-6));
        if (addAttention) attentions = new ModuleList<VaeAttention>(new VaeAttention(channels, groups));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var h = resnets[0].forward(x, null);
        if (attentions is not null) h = attentions[0].forward(h);
        return resnets[1].forward(h, null);
    }
}

// diffusers Attention as built by UNetMidBlock2D for the VAE: group_norm, single head, biased projections, residual.
public sealed class VaeAttention : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly GroupNorm group_norm;
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly ModuleList<Module<Tensor, Tensor>> to_out;
#pragma warning restore IDE1006
    private readonly int _channels;

    public VaeAttention(int channels, int groups) : base("Attention")
    {
        _channels = channels;
        group_norm = Layers.GroupNorm(groups, channels, 1e-6);
        to_q = Linear(channels, channels);
        to_k = Linear(channels, channels);
        to_v = Linear(channels, channels);
        to_out = new ModuleList<Module<Tensor, Tensor>>(Linear(channels, channels), Dropout(0.0));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], hgt = x.shape[2], wid = x.shape[3];
        var h = group_norm.forward(x).view(b, c, hgt * wid).transpose(1, 2);  // [B, HW, C]
        var q = to_q.forward(h).unsqueeze(1);                                   // [B, 1, HW, C]
        var k = to_k.forward(h).unsqueeze(1);
        var v = to_v.forward(h).unsqueeze(1);
        Tensor o;
        if (q.dtype == ScalarType.Float32)
        {
            o = functional.scaled_dot_product_attention(q, k, v);              // [B, 1, HW, C]
        }
        else
        {
            // upcast_softmax: scores and softmax in fp32 for half-precision weights.
            o = AttentionMath.Probabilities(q, k, _channels, upcast: true).to(v.dtype).matmul(v);
        }
        o = to_out[0].forward(o.squeeze(1));                                    // [B, HW, C]
        o = o.transpose(1, 2).reshape(b, c, hgt, wid);                           // [B, C, H, W]
        return o.add(x).MoveToOuterDisposeScope();
    }
}

using CTCal.Core.Models;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using CTCal.Core.Text;

namespace CTCal.Trainer.Tests;

/// <summary>
/// A tiny latent diffusion model for loop tests: whitespace tokenizer (8 tokens), an embedding text encoder with
/// q/k/v/out projections, a fixed 2x average-pool "VAE", and a UNet-like denoiser with two cross-attention layers
/// (<c>down.attn2</c> at the latent size, <c>mid.attn2</c> at half of it) that report their probabilities.
/// Built deterministically from <paramref name="seed"/>.
/// </summary>
internal sealed class ToyDiffusionModel : ITrainableDiffusionModel
{
    public const int Tokens = 8;
    private readonly ToyText _text;
    private readonly ToyUNet _unet;
    private readonly Tensor _vaeProjection;

    public ToyDiffusionModel(int seed = 1, string predictionType = "epsilon")
    {
        // Weights from a private generator: tests run in parallel and torch's global RNG is shared.
        using var generator = new Generator((ulong)seed);
        _text = new ToyText();
        _unet = new ToyUNet();
        DeterministicInit.Reset(_text, generator);
        DeterministicInit.Reset(_unet, generator);
        using (no_grad()) foreach (var p in _unet.parameters().Where(p => p.dim() == 1)) p.uniform_(-0.1, 0.1, generator);
        _vaeProjection = randn(new long[] { 4, 3 }, generator: generator).mul(0.5).DetachFromDisposeScope();
        PredictionType = predictionType;
        var betas = Enumerable.Range(0, 1000).Select(i => Math.Pow(Math.Sqrt(0.00085) + i * (Math.Sqrt(0.012) - Math.Sqrt(0.00085)) / 999, 2)).ToArray();
        double product = 1;
        AlphasCumprod = betas.Select(b => product *= 1 - b).ToArray();
    }

    /// <summary>Makes every prediction NaN (to test divergence handling).</summary>
    public bool PoisonPredictions { get; set; }

    /// <summary>Makes <see cref="PredictNoise"/> throw this exception (a model that fails to run).</summary>
    public Exception? FailPredictions { get; set; }

    /// <summary>
    /// Every <see cref="PredictNoise"/> call: the timesteps, whether attention maps were captured, and whether gradients were
    /// on (the CTCal teacher pass runs under no_grad).
    /// </summary>
    public List<(long[] Timesteps, bool Captured, bool Grad)> Calls { get; } = [];

    public nn.Module UNet => _unet;
    public nn.Module TextEncoder => _text;
    public IReadOnlyList<AttentionLayerInfo> CrossAttentionLayers { get; } = [new("down.attn2", 1), new("mid.attn2", 2)];
    public int VaeScaleFactor => 2;
    public int LatentChannels => 4;
    public double[] AlphasCumprod { get; }
    public string PredictionType { get; }
    public string DenoiserComponent => LoraKeys.UNet;
    public IReadOnlyList<string> DenoiserLoraTargets => LoraOptions.UNetTargets;

    public ITrainingObjective CreateObjective(TrainingOptions options) =>
        new DiffusionObjective(AlphasCumprod, PredictionType, options.NoiseOffset, options.MinSnrGamma);

    public PromptTokens Tokenize(string prompt)
    {
        var words = prompt.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var ids = new long[Tokens];
        var report = new List<PromptWord>();
        for (int i = 0; i < words.Length; i++)
        {
            int position = i + 1;
            bool fits = position < Tokens - 1;
            if (fits) ids[position] = 2 + (uint)words[i].GetHashCode(StringComparison.Ordinal) % 60;
            report.Add(new PromptWord(words[i], fits ? [position] : []));
        }
        ids[0] = 0;
        for (int p = Math.Min(words.Length + 1, Tokens - 1); p < Tokens; p++) ids[p] = 1;
        return new PromptTokens(ids, report);
    }

    public TextConditioning EncodeText(Tensor inputIds) => new(_text.forward(inputIds));

    public Tensor EncodeImages(Tensor pixels, Generator generator)
    {
        var pooled = nn.functional.avg_pool2d(pixels, 2);                                   // [B, 3, h, w]
        var mean = einsum("oc,bchw->bohw", _vaeProjection, pooled);
        return mean + 0.01 * randn(mean.shape, generator: generator);
    }

    public Tensor EncodePosterior(Tensor pixels) =>
        einsum("oc,bchw->bohw", _vaeProjection, nn.functional.avg_pool2d(pixels, 2));

    public Tensor SamplePosterior(Tensor posterior, Generator generator) => posterior + 0.01 * randn(posterior.shape, generator: generator);

    public Tensor DecodeLatents(Tensor latents) =>
        nn.functional.interpolate(einsum("oc,bohw->bchw", _vaeProjection, latents), scale_factor: [2.0, 2.0]).clamp(-1, 1);

    public Tensor PredictNoise(Tensor latents, Tensor timesteps, TextConditioning context, IReadOnlyCollection<string>? capturePaths,
        out IReadOnlyDictionary<string, Tensor> maps)
    {
        if (FailPredictions is not null) throw FailPredictions;
        Calls.Add((timesteps.to_type(ScalarType.Int64).data<long>().ToArray(), capturePaths is not null, is_grad_enabled())); // sampling passes float timesteps
        var captured = new Dictionary<string, Tensor>();
        var output = _unet.forward(latents, timesteps, context.Hidden, capturePaths, captured);
        maps = captured;
        return PoisonPredictions ? output * double.NaN : output;
    }

    public void Dispose()
    {
        _text.Dispose();
        _unet.Dispose();
        _vaeProjection.Dispose();
    }
}

internal sealed class ToyText : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Embedding token_embedding;
    private readonly Linear q_proj, k_proj, v_proj, out_proj;
#pragma warning restore IDE1006

    public ToyText() : base(nameof(ToyText))
    {
        token_embedding = nn.Embedding(64, 16);
        q_proj = nn.Linear(16, 16);
        k_proj = nn.Linear(16, 16);
        v_proj = nn.Linear(16, 16);
        out_proj = nn.Linear(16, 16);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids)
    {
        var h = token_embedding.forward(ids);                                               // [B, T, 16]
        var a = q_proj.forward(h).matmul(k_proj.forward(h).transpose(1, 2)).div(4).softmax(-1);
        return h + out_proj.forward(a.matmul(v_proj.forward(h)));
    }
}

internal sealed class ToyCrossAttention : nn.Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear to_q, to_k, to_v;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> to_out;
#pragma warning restore IDE1006
    private const int Heads = 2, HeadDim = 4;

    public ToyCrossAttention(int dim) : base(nameof(ToyCrossAttention))
    {
        to_q = nn.Linear(dim, Heads * HeadDim, hasBias: false);
        to_k = nn.Linear(16, Heads * HeadDim, hasBias: false);
        to_v = nn.Linear(16, Heads * HeadDim, hasBias: false);
        to_out = new ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(Heads * HeadDim, dim));
        RegisterComponents();
    }

    public Tensor? LastProbabilities { get; private set; }

    public override Tensor forward(Tensor x, Tensor context)
    {
        long b = x.shape[0], n = x.shape[1], m = context.shape[1];
        var q = to_q.forward(x).view(b, n, Heads, HeadDim).transpose(1, 2);          // [B, heads, N, d]
        var k = to_k.forward(context).view(b, m, Heads, HeadDim).transpose(1, 2);    // [B, heads, M, d]
        var v = to_v.forward(context).view(b, m, Heads, HeadDim).transpose(1, 2);
        var p = q.matmul(k.transpose(-1, -2)).div(Math.Sqrt(HeadDim)).softmax(-1);   // [B, heads, N, M]
        LastProbabilities = p;
        return to_out[0].forward(p.matmul(v).transpose(1, 2).reshape(b, n, Heads * HeadDim));
    }
}

internal sealed class ToyUNet : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Conv2d conv_in, conv_out;
    private readonly Linear time_proj;
    private readonly ToyBlock down, mid;
#pragma warning restore IDE1006

    public ToyUNet() : base(nameof(ToyUNet))
    {
        conv_in = nn.Conv2d(4, 8, 3, padding: 1);
        time_proj = nn.Linear(8, 8);
        down = new ToyBlock();
        mid = new ToyBlock();
        conv_out = nn.Conv2d(8, 4, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => throw new NotSupportedException("use the conditioned forward");

    public Tensor forward(Tensor x, Tensor t, Tensor context, IReadOnlyCollection<string>? capture, Dictionary<string, Tensor> maps)
    {
        var freqs = exp(arange(4, dtype: ScalarType.Float32).mul(-Math.Log(1000) / 4));
        var angles = t.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);                  // [B, 4]
        var temb = time_proj.forward(cat([angles.sin(), angles.cos()], 1));                      // [B, 8]
        var h = conv_in.forward(x) + temb.unsqueeze(-1).unsqueeze(-1);                           // [B, 8, H, W]
        h = down.forward(h, context, "down.attn2", capture, maps);
        var low = nn.functional.avg_pool2d(h, 2);
        low = mid.forward(low, context, "mid.attn2", capture, maps);
        h = h + nn.functional.interpolate(low, scale_factor: [2.0, 2.0]);
        return conv_out.forward(nn.functional.silu(h));
    }
}

internal sealed class ToyBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ToyCrossAttention attn2;
#pragma warning restore IDE1006

    public ToyBlock() : base(nameof(ToyBlock))
    {
        attn2 = new ToyCrossAttention(8);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => throw new NotSupportedException();

    public Tensor forward(Tensor h, Tensor context, string path, IReadOnlyCollection<string>? capture, Dictionary<string, Tensor> maps)
    {
        long b = h.shape[0], c = h.shape[1], hh = h.shape[2], ww = h.shape[3];
        var tokens = h.flatten(2).transpose(1, 2);                                                // [B, HW, C]
        var o = attn2.forward(tokens, context);
        if (capture?.Contains(path) == true) maps[path] = attn2.LastProbabilities!;
        return h + o.transpose(1, 2).reshape(b, c, hh, ww);
    }
}

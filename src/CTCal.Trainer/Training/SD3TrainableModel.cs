using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Core.Text;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// A diffusers Stable Diffusion 3 folder (<c>model_index.json</c> <c>StableDiffusion3Pipeline</c>: transformer/,
/// text_encoder/ (CLIP-L with projection), text_encoder_2/ (CLIP-G with projection), tokenizer/, tokenizer_2/, vae/ (16
/// channels, shift and scale), scheduler/ (flow matching)) as an <see cref="ITrainableDiffusionModel"/>. The transformer is
/// fp32 with gradients; the text encoders and the VAE are frozen. T5 (text_encoder_3) is not loaded: its part of the
/// joint text sequence is zeros, as the pipeline does when text_encoder_3 is None (<see cref="SD3PromptEncoder"/>).
/// <para>Prompts: <see cref="PromptTokens.InputIds"/> is the CLIP-L row (77 ids, tokenizer/) followed by the CLIP-G row (77
/// ids, tokenizer_2/, which pads with its own pad token); the word positions are CLIP-L's. The joint text sequence starts
/// with the 77 CLIP positions (CLIP-L and CLIP-G states side by side on the features), so those word positions index it
/// directly; the T5 part (zeros here) follows.</para>
/// <para>Attention: the calibrated layers are the joint attentions <c>transformer_blocks.{i}.attn</c>, downscale = the patch
/// size. The transformer records the image-query x text-key block of the softmax over image + text keys;
/// <see cref="PredictNoise"/> captures that block renormalised over the text keys (computed directly as the image queries'
/// softmax over the text keys, <see cref="AttentionCapture.NormaliseOverText"/>), so the maps are attention distributions
/// over the text tokens like a UNet's cross-attention and CTCal's loss is the same function for both families.</para>
/// </summary>
public sealed class SD3TrainableModel : ITrainableDiffusionModel
{
    /// <summary>model_index.json's <c>_class_name</c> of an SD3 folder.</summary>
    public const string PipelineClass = "StableDiffusion3Pipeline";

    private readonly ClipTokenizer _tokenizerL;
    private readonly ClipTokenizer _tokenizerG;
    private readonly SD3PromptEncoder _prompts;

    public SD3TrainableModel(SD3Transformer2DModel transformer, CLIPTextModelWithProjection clipL, CLIPTextModelWithProjection clipG,
        AutoencoderKL vae, ClipTokenizer tokenizerL, ClipTokenizer tokenizerG, SchedulerConfig scheduler, string? folder = null)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        ArgumentNullException.ThrowIfNull(clipL);
        ArgumentNullException.ThrowIfNull(clipG);
        ArgumentNullException.ThrowIfNull(vae);
        ArgumentNullException.ThrowIfNull(scheduler);
        if (vae.Config.LatentChannels != transformer.Config.InChannels)
            throw new ArgumentException($"the VAE has {vae.Config.LatentChannels} latent channels but the transformer takes {transformer.Config.InChannels}");
        Transformer = transformer;
        ClipL = clipL;
        ClipG = clipG;
        Vae = vae;
        _tokenizerL = tokenizerL;
        _tokenizerG = tokenizerG;
        Scheduler = scheduler;
        Folder = folder;
        _prompts = new SD3PromptEncoder(clipL, clipG, null, transformer.Config.JointAttentionDim);
        if (_prompts.PooledDim != transformer.Config.PooledProjectionDim)
            throw new ArgumentException($"the CLIP projections give {_prompts.PooledDim} pooled features but the transformer takes {transformer.Config.PooledProjectionDim}");
        CrossAttentionLayers = transformer.JointAttentionPaths.Select(l => new AttentionLayerInfo(l.Path, l.Downscale)).ToList();
        TextEncoderModule = new TextEncoders(clipL, clipG);
        PretrainedModels.Freeze(clipL);
        PretrainedModels.Freeze(clipG);
        PretrainedModels.Freeze(vae);
    }

    /// <summary>True when <paramref name="folder"/> is a diffusers folder whose model_index.json names <see cref="PipelineClass"/>.</summary>
    public static bool IsSD3Folder(string folder)
    {
        string index = Path.Combine(folder, "model_index.json");
        return Directory.Exists(folder) && File.Exists(index) && ModelIndex.Load(index).ClassName == PipelineClass;
    }

    /// <summary>Loads every component of the SD3 folder <paramref name="folder"/> (safetensors; plain, variant-less or sharded weights).</summary>
    /// <exception cref="ModelFolderException">not an SD3 folder, or a component is missing (names it).</exception>
    public static SD3TrainableModel Load(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string root = Path.GetFullPath(folder);
        CheckLayout(root);
        ComponentFiles Files(string component) => new(component, Path.Combine(root, component, "config.json"),
            DiffusersWeights.ResolveWeightsFile(Path.Combine(root, component)));
        var tokenizerL = ClipTokenizer.FromFolder(Path.Combine(root, "tokenizer"));
        var tokenizerG = ClipTokenizer.FromFolder(Path.Combine(root, "tokenizer_2"));
        var scheduler = SchedulerConfig.Load(Path.Combine(root, "scheduler", "scheduler_config.json"));
        var loaded = new List<nn.Module>();
        try
        {
            var transformer = PretrainedModels.LoadSD3Transformer(Files("transformer"));
            loaded.Add(transformer);
            var clipL = PretrainedModels.LoadTextEncoderWithProjection(Files("text_encoder"));
            loaded.Add(clipL);
            var clipG = PretrainedModels.LoadTextEncoderWithProjection(Files("text_encoder_2"));
            loaded.Add(clipG);
            var vae = PretrainedModels.LoadVae(Files("vae"));
            loaded.Add(vae);
            return new SD3TrainableModel(transformer, clipL, clipG, vae, tokenizerL, tokenizerG, scheduler, root);
        }
        catch
        {
            foreach (var m in loaded) m.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model the SD3 folder's configs describe with deterministic random weights from <paramref name="seed"/> instead of its
    /// safetensors (which need not exist): same shapes and compute, for benchmarks.
    /// </summary>
    public static SD3TrainableModel RandomFromConfigs(string folder, long seed)
    {
        string root = Path.GetFullPath(folder);
        CheckLayout(root);
        string Config(string component) => Path.Combine(root, component, "config.json");
        using var generator = new Generator((ulong)seed);
        var transformer = new SD3Transformer2DModel(SD3TransformerConfig.Load(Config("transformer")));
        var clipL = new CLIPTextModelWithProjection(ClipTextConfig.Load(Config("text_encoder")));
        var clipG = new CLIPTextModelWithProjection(ClipTextConfig.Load(Config("text_encoder_2")));
        var vae = new AutoencoderKL(VaeConfig.Load(Config("vae")));
        foreach (nn.Module m in new nn.Module[] { transformer, clipL, clipG, vae }) DeterministicInit.Reset(m, generator);
        return new SD3TrainableModel(transformer, clipL, clipG, vae, ClipTokenizer.FromFolder(Path.Combine(root, "tokenizer")),
            ClipTokenizer.FromFolder(Path.Combine(root, "tokenizer_2")), SchedulerConfig.Load(Path.Combine(root, "scheduler", "scheduler_config.json")), root);
    }

    private static void CheckLayout(string root)
    {
        string index = Path.Combine(root, "model_index.json");
        if (!File.Exists(index)) throw new ModelFolderException(root, ["no model_index.json (an SD3 diffusers folder has one)"]);
        var modelIndex = ModelIndex.Load(index);
        if (modelIndex.ClassName != PipelineClass)
            throw new ModelFolderException(root, [$"model_index.json's _class_name is '{modelIndex.ClassName}', not {PipelineClass}"]);
        var problems = new List<string>();
        foreach (string component in new[] { "transformer", "text_encoder", "text_encoder_2", "vae" })
            if (!File.Exists(Path.Combine(root, component, "config.json"))) problems.Add($"the SD3 component {component}/ has no config.json");
        foreach (string tokenizer in new[] { "tokenizer", "tokenizer_2" })
            if (!Directory.Exists(Path.Combine(root, tokenizer))) problems.Add($"the SD3 tokenizer folder {tokenizer}/ is missing");
        if (!File.Exists(Path.Combine(root, "scheduler", "scheduler_config.json"))) problems.Add("scheduler/scheduler_config.json is missing");
        if (problems.Count > 0) throw new ModelFolderException(root, problems);
    }

    /// <summary>The model folder it was loaded from, if any.</summary>
    public string? Folder { get; }
    public SD3Transformer2DModel Transformer { get; }
    public CLIPTextModelWithProjection ClipL { get; }
    public CLIPTextModelWithProjection ClipG { get; }
    public AutoencoderKL Vae { get; }
    public SchedulerConfig Scheduler { get; }

    /// <summary>Both CLIP encoders under one module (<c>text_encoder.*</c>, <c>text_encoder_2.*</c>): what the trainer freezes.</summary>
    private TextEncoders TextEncoderModule { get; }

    public nn.Module UNet => Transformer;
    public nn.Module TextEncoder => TextEncoderModule;
    public string DenoiserComponent => LoraKeys.Transformer;
    public IReadOnlyList<string> DenoiserLoraTargets => LoraOptions.TransformerTargets;
    public IReadOnlyList<AttentionLayerInfo> CrossAttentionLayers { get; }
    public int VaeScaleFactor => Vae.Config.DownscaleFactor;
    public int LatentChannels => Vae.Config.LatentChannels;

    /// <summary>Flow models have no ᾱ table: use <see cref="CreateObjective"/>.</summary>
    public double[] AlphasCumprod => throw new NotSupportedException("SD3 trains with flow matching and has no alphas_cumprod table; use CreateObjective");

    /// <summary><c>flow</c>: the transformer predicts the velocity noise - x0.</summary>
    public string PredictionType => FlowTrainingObjective.PredictionType;

    /// <summary>The number of training timesteps of the folder's flow-matching scheduler.</summary>
    public int NumTrainTimesteps => Scheduler.NumTrainTimesteps;

    /// <summary>
    /// Flow matching with the run's <see cref="TrainingOptions.FlowMatching"/> weighting scheme and the scheduler's shift. The
    /// DDPM-only options (noise offset, Min-SNR-γ) are refused.
    /// </summary>
    public ITrainingObjective CreateObjective(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.NoiseOffset != 0) throw new ArgumentException("noise-offset is a DDPM option; SD3's flow matching has none");
        if (options.MinSnrGamma is not null) throw new ArgumentException("min-snr-gamma is a DDPM option; SD3's flow matching weights the loss by --weighting-scheme");
        return new FlowTrainingObjective(options.FlowMatching with { Shift = Scheduler.Shift }, Scheduler.NumTrainTimesteps);
    }

    public PromptTokens Tokenize(string prompt)
    {
        var l = _tokenizerL.Encode(prompt);
        var g = _tokenizerG.Encode(prompt);
        var tokens = ClipPromptTokens.From(l);
        return tokens with { InputIds = [.. tokens.InputIds, .. g.InputIds.Select(i => (long)i)] };
    }

    /// <summary>[B, 154] ids (CLIP-L row then CLIP-G row) -> joint text states [B, 77 + 77, joint_attention_dim] and pooled [B, pooled_dim].</summary>
    public TextConditioning EncodeText(Tensor inputIds)
    {
        long half = ClipTokenizer.MaxLength;
        if (inputIds.dim() != 2 || inputIds.shape[1] != 2 * half)
            throw new ArgumentException($"SD3 input ids must be [B, {2 * half}] (CLIP-L then CLIP-G), got [{string.Join(", ", inputIds.shape)}]", nameof(inputIds));
        var (prompt, pooled) = _prompts.Encode(inputIds.narrow(1, 0, half), inputIds.narrow(1, half, half), null);
        return new TextConditioning(prompt, pooled);
    }

    public Tensor EncodeImages(Tensor pixels, Generator generator) => Vae.ScaleLatents(Vae.EncodeSample(pixels, generator));

    public Tensor EncodePosterior(Tensor pixels) => Vae.EncodePosterior(pixels); // [B, 2 * latent, h, w]

    public Tensor SamplePosterior(Tensor posterior, Generator generator) => Vae.SampleScaled(posterior, generator);

    public Tensor DecodeLatents(Tensor latents) => Vae.Decode(Vae.UnscaleLatents(latents));

    /// <summary>
    /// The velocity prediction at flow timesteps <paramref name="timesteps"/> (sigma·1000, cast to float32). Captured maps are
    /// the joint attention's image x text block renormalised over the text keys: [B, heads, image tokens, text tokens].
    /// </summary>
    public Tensor PredictNoise(Tensor latents, Tensor timesteps, TextConditioning context, IReadOnlyCollection<string>? capturePaths,
        out IReadOnlyDictionary<string, Tensor> maps)
    {
        var pooled = context.Pooled ?? throw new ArgumentException("SD3 needs the pooled text projections (EncodeText gives them)", nameof(context));
        var t = timesteps.to(ScalarType.Float32);
        if (capturePaths is null || capturePaths.Count == 0)
        {
            maps = new Dictionary<string, Tensor>();
            return Transformer.forward(latents, context.Hidden, pooled, t, null);
        }
        // Not disposed: after the forward its maps belong to the caller's dispose scope.
        var capture = new AttentionCapture(capturePaths) { NormaliseOverText = true };
        var output = Transformer.forward(latents, context.Hidden, pooled, t, capture);
        maps = new Dictionary<string, Tensor>(capture.Maps);
        return output;
    }

    /// <summary>
    /// Rows of a joint-softmax image-query x text-key block divided by their sum over the text keys (a distribution over the
    /// text tokens): what <see cref="PredictNoise"/> captures (computed there directly, <see cref="AttentionCapture.NormaliseOverText"/>).
    /// </summary>
    public static Tensor RenormaliseOverText(Tensor block) => block / block.sum(-1, keepdim: true).clamp_min(1e-12);

    public void Dispose()
    {
        Transformer.Dispose();
        TextEncoderModule.Dispose();
        Vae.Dispose();
    }

    /// <summary>CLIP-L and CLIP-G as one module tree (<c>text_encoder</c>, <c>text_encoder_2</c>).</summary>
    private sealed class TextEncoders : nn.Module
    {
#pragma warning disable IDE1006 // component names
        private readonly CLIPTextModelWithProjection text_encoder;
        private readonly CLIPTextModelWithProjection text_encoder_2;
#pragma warning restore IDE1006

        public TextEncoders(CLIPTextModelWithProjection clipL, CLIPTextModelWithProjection clipG) : base(nameof(TextEncoders))
        {
            text_encoder = clipL;
            text_encoder_2 = clipG;
            RegisterComponents();
        }
    }
}

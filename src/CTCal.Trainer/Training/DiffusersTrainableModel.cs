using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Core.Text;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// A diffusers Stable Diffusion 1.x/2.x folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/) as an
/// <see cref="ITrainableDiffusionModel"/>: the UNet in fp32 with gradients, the text encoder and VAE frozen, the CLIP
/// tokenizer from CTCal.Core and the training schedule from the folder's scheduler config. Owns and disposes the modules.
/// </summary>
public sealed class DiffusersTrainableModel : ITrainableDiffusionModel
{
    private readonly ClipTokenizer _tokenizer;

    public DiffusersTrainableModel(UNet2DConditionModel unet, CLIPTextModel textEncoder, AutoencoderKL vae, ClipTokenizer tokenizer,
        SchedulerConfig scheduler, string? folder = null)
    {
        UNetModel = unet;
        TextModel = textEncoder;
        Vae = vae;
        _tokenizer = tokenizer;
        Scheduler = scheduler;
        Folder = folder;
        AlphasCumprod = NoiseSchedule.AlphasCumprod(scheduler);
        CrossAttentionLayers = unet.CrossAttentionPaths.Select(l => new AttentionLayerInfo(l.Path, l.Downscale)).ToList();
        foreach (var p in vae.parameters()) p.requires_grad = false;
    }

    /// <summary>
    /// Loads every component of the diffusers folder <paramref name="folder"/> (safetensors only; plain, variant or sharded
    /// weights), or of an original single-file checkpoint with default <see cref="SingleFileOptions"/> (see <see cref="LoadSingleFile"/>).
    /// </summary>
    public static DiffusersTrainableModel Load(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (File.Exists(folder)) return LoadSingleFile(folder, null);
        var layout = ModelFolder.Open(folder);
        var tokenizer = ClipTokenizer.FromFolder(Path.GetDirectoryName(layout.Tokenizer.VocabPath)!);
        var scheduler = SchedulerConfig.Load(layout.SchedulerConfigPath);
        var unet = PretrainedModels.LoadUNet(layout.Unet);
        CLIPTextModel? text = null;
        try
        {
            text = PretrainedModels.LoadTextEncoder(layout.TextEncoder);
            var vae = PretrainedModels.LoadVae(layout.Vae);
            return new DiffusersTrainableModel(unet, text, vae, tokenizer, scheduler, layout.Root);
        }
        catch
        {
            unet.Dispose();
            text?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads an original single-file SD 1.x/2.x checkpoint (<c>.safetensors</c>) without converting it: configs derived from
    /// its shapes or taken from <see cref="SingleFileOptions.ConfigFolder"/>, weights read under their diffusers names
    /// through Core's key map; the tokenizer comes from <see cref="SingleFileOptions.TokenizerFolder"/> (or the config
    /// folder). <paramref name="notes"/> receives what was assumed (family, prediction type, ...). Pickle files are refused.
    /// </summary>
    /// <exception cref="ModelFolderException">a pickle file, an unknown layout, or no tokenizer (names the file).</exception>
    public static DiffusersTrainableModel LoadSingleFile(string path, SingleFileOptions? options, Action<string>? notes = null)
    {
        var checkpoint = SingleFileCheckpoint.Open(path, options);
        foreach (string note in checkpoint.Notes) notes?.Invoke(note);
        var tokenizer = ClipTokenizer.FromFolder(Path.GetDirectoryName(checkpoint.Tokenizer.VocabPath)!);
        UNet2DConditionModel? unet = null;
        CLIPTextModel? text = null;
        try
        {
            using (var weights = checkpoint.OpenWeights(CheckpointKeyMap.UNet)) unet = PretrainedModels.LoadUNet(checkpoint.UNetConfig, weights);
            using (var weights = checkpoint.OpenWeights(CheckpointKeyMap.TextEncoder)) text = PretrainedModels.LoadTextEncoder(checkpoint.TextEncoderConfig, weights);
            using var vaeWeights = checkpoint.OpenWeights(CheckpointKeyMap.Vae);
            var vae = PretrainedModels.LoadVae(checkpoint.VaeConfig, vaeWeights);
            return new DiffusersTrainableModel(unet, text, vae, tokenizer, checkpoint.SchedulerConfig, checkpoint.Path);
        }
        catch
        {
            unet?.Dispose();
            text?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model a diffusers folder's configs describe (<c>unet/</c>, <c>text_encoder/</c>, <c>vae/</c> <c>config.json</c>,
    /// <c>tokenizer/</c>, <c>scheduler/</c>) with deterministic random weights from <paramref name="seed"/> instead of its
    /// safetensors (which need not exist): same shapes, same memory and compute, for benchmarks.
    /// </summary>
    public static DiffusersTrainableModel RandomFromConfigs(string folder, long seed)
    {
        string Config(string component) => Path.Combine(folder, component, "config.json");
        var tokenizer = ClipTokenizer.FromFolder(Path.Combine(folder, "tokenizer"));
        var scheduler = SchedulerConfig.Load(Path.Combine(folder, "scheduler", "scheduler_config.json"));
        using var generator = new Generator((ulong)seed);
        var unet = new UNet2DConditionModel(UNetConfig.Load(Config("unet")));
        var text = new CLIPTextModel(ClipTextConfig.Load(Config("text_encoder")));
        var vae = new AutoencoderKL(VaeConfig.Load(Config("vae")));
        foreach (nn.Module m in new nn.Module[] { unet, text, vae }) DeterministicInit.Reset(m, generator);
        PretrainedModels.Freeze(text);
        PretrainedModels.Freeze(vae);
        return new DiffusersTrainableModel(unet, text, vae, tokenizer, scheduler, Path.GetFullPath(folder));
    }

    /// <summary>The model folder (or single file) it was loaded from, if any.</summary>
    public string? Folder { get; }
    public UNet2DConditionModel UNetModel { get; }
    public CLIPTextModel TextModel { get; }
    public AutoencoderKL Vae { get; }
    public SchedulerConfig Scheduler { get; }

    public nn.Module UNet => UNetModel;
    public nn.Module TextEncoder => TextModel;
    public IReadOnlyList<AttentionLayerInfo> CrossAttentionLayers { get; }
    public int VaeScaleFactor => Vae.Config.DownscaleFactor;
    public int LatentChannels => Vae.Config.LatentChannels;
    public double[] AlphasCumprod { get; }
    public string PredictionType => Scheduler.PredictionType;
    public string DenoiserComponent => LoraKeys.UNet;
    public IReadOnlyList<string> DenoiserLoraTargets => LoraOptions.UNetTargets;

    public ITrainingObjective CreateObjective(TrainingOptions options) =>
        new DiffusionObjective(AlphasCumprod, PredictionType, options.NoiseOffset, options.MinSnrGamma);

    public PromptTokens Tokenize(string prompt) => ClipPromptTokens.From(_tokenizer.Encode(prompt));

    public TextConditioning EncodeText(Tensor inputIds) => new(TextModel.forward(inputIds).LastHiddenState);

    public Tensor EncodeImages(Tensor pixels, Generator generator) => Vae.ScaleLatents(Vae.EncodeSample(pixels, generator));

    public Tensor EncodePosterior(Tensor pixels) => Vae.EncodePosterior(pixels); // [B, 2 * latent, h, w]

    public Tensor SamplePosterior(Tensor posterior, Generator generator) => Vae.SampleScaled(posterior, generator);

    public Tensor DecodeLatents(Tensor latents) => Vae.Decode(Vae.UnscaleLatents(latents));

    public Tensor PredictNoise(Tensor latents, Tensor timesteps, TextConditioning context, IReadOnlyCollection<string>? capturePaths,
        out IReadOnlyDictionary<string, Tensor> maps)
    {
        if (capturePaths is null || capturePaths.Count == 0)
        {
            maps = new Dictionary<string, Tensor>();
            return UNetModel.forward(latents, timesteps, context.Hidden, null);
        }
        var capture = new AttentionCapture(capturePaths);
        var output = UNetModel.forward(latents, timesteps, context.Hidden, capture);
        // The maps already belong to the caller's dispose scope; copy the references out before the capture goes away.
        maps = new Dictionary<string, Tensor>(capture.Maps);
        return output;
    }

    public void Dispose()
    {
        UNetModel.Dispose();
        TextModel.Dispose();
        Vae.Dispose();
    }
}

using CTCal.Core.Diffusers;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace CTCal.BaseModel;

/// <summary>The model families a base can be trained as.</summary>
public enum BaseFamily
{
    /// <summary>Stable Diffusion 1.x: CLIPTextModel + UNet2DConditionModel, DDPM (v-prediction, Min-SNR-γ).</summary>
    SD1,

    /// <summary>Stable Diffusion 3 style: two CLIPTextModelWithProjection + SD3Transformer2DModel, flow matching, no T5.</summary>
    SD3,
}

/// <summary>
/// What differs between the families of a base run (<see cref="BaseDiffusionTrainer"/> owns the shared loop: data, caption
/// dropout, EMA, checkpoints, logging): the networks, how a caption conditions them, the training objective and the folder
/// written at the end.
/// </summary>
internal abstract class BaseDenoiser : IDisposable
{
    protected BaseDenoiser(ITrainingObjective objective) => Objective = objective;

    /// <summary>The training objective (noise, timesteps, noisy input, target, loss).</summary>
    public ITrainingObjective Objective { get; }

    /// <summary>The denoiser's component name (<c>unet</c>, <c>transformer</c>): log lines and the recipe's parameter count.</summary>
    public abstract string Component { get; }

    /// <summary>The prediction type recorded in the recipe (v_prediction, epsilon, flow).</summary>
    public abstract string PredictionType { get; }

    /// <summary>Every trained parameter under its checkpoint name (<c>component.parameter</c>), denoiser first.</summary>
    public abstract IReadOnlyList<(string Name, Parameter Parameter)> NamedParameters { get; }

    public abstract long DenoiserParameters { get; }

    public abstract long TextParameters { get; }

    /// <summary>Training mode for every trained module.</summary>
    public abstract void Train();

    /// <summary>The denoiser's prediction at <paramref name="noisy"/>, <paramref name="timesteps"/> for captions <paramref name="ids"/> [B, 77].</summary>
    public abstract Tensor Predict(Tensor noisy, Tensor timesteps, Tensor ids);

    /// <summary>Writes the model's components, scheduler and model_index.json (the trainer adds the tokenizer and the VAE).</summary>
    public abstract void WriteComponents(string output, BaseModelConfig config, WorldTokenizer world);

    public abstract void Dispose();

    /// <summary>The family's networks, randomly initialised from <paramref name="init"/>.</summary>
    public static BaseDenoiser Create(BaseFamily family, BaseModelConfig config, WorldTokenizer world, BaseTrainingOptions options, Generator init) =>
        family == BaseFamily.SD3 ? new SD3Denoiser(config, world, options, init) : new UNetDenoiser(config, world, options, init);

    protected static IEnumerable<(string, Parameter)> Prefixed(string prefix, nn.Module module) =>
        module.named_parameters().Select(p => ($"{prefix}.{p.name}", p.parameter));

    protected static readonly Dictionary<string, string> Metadata = new() { ["format"] = "pt" };

    protected static void Save(nn.Module module, string output, string component, string weights, string configJson)
    {
        DiffusersWeights.Save(module, Path.Combine(output, component, weights), Metadata);
        AtomicFile.WriteText(Path.Combine(output, component, "config.json"), configJson);
    }
}

/// <summary>SD 1.x: CLIP text encoder (last hidden state) + UNet, DDPM objective of the config's prediction type with Min-SNR-γ.</summary>
internal sealed class UNetDenoiser : BaseDenoiser
{
    private readonly UNet2DConditionModel _unet;
    private readonly CLIPTextModel _text;

    public UNetDenoiser(BaseModelConfig config, WorldTokenizer world, BaseTrainingOptions options, Generator init)
        : base(DdpmObjective(config, options))
    {
        _unet = new UNet2DConditionModel(UNetConfig.Parse(config.UNetJson()));
        _text = new CLIPTextModel(ClipTextConfig.Parse(config.TextEncoderJson(world)));
        DeterministicInit.Reset(_unet, init);
        DeterministicInit.Reset(_text, init);
        NamedParameters = [.. Prefixed("unet", _unet), .. Prefixed("text_encoder", _text)];
        PredictionType = config.PredictionType;
    }

    private static DiffusionObjective DdpmObjective(BaseModelConfig config, BaseTrainingOptions options)
    {
        var scheduler = SchedulerConfig.Parse(config.SchedulerJson());
        return new DiffusionObjective(NoiseSchedule.AlphasCumprod(scheduler), scheduler.PredictionType, 0, options.MinSnrGamma);
    }

    public override string Component => "unet";
    public override string PredictionType { get; }
    public override IReadOnlyList<(string Name, Parameter Parameter)> NamedParameters { get; }
    public override long DenoiserParameters => _unet.parameters().Sum(p => p.numel());
    public override long TextParameters => _text.parameters().Sum(p => p.numel());

    public override void Train()
    {
        _unet.train();
        _text.train();
    }

    public override Tensor Predict(Tensor noisy, Tensor timesteps, Tensor ids) =>
        _unet.forward(noisy, timesteps, _text.forward(ids).LastHiddenState, null);           // context [B, 77, D]

    public override void WriteComponents(string output, BaseModelConfig config, WorldTokenizer world)
    {
        Save(_unet, output, "unet", "diffusion_pytorch_model.safetensors", config.UNetJson());
        Save(_text, output, "text_encoder", "model.safetensors", config.TextEncoderJson(world));
        AtomicFile.WriteText(Path.Combine(output, "scheduler", "scheduler_config.json"), config.SchedulerJson());
        AtomicFile.WriteText(Path.Combine(output, "model_index.json"), BaseModelConfig.ModelIndexJson());
    }

    public override void Dispose()
    {
        _unet.Dispose();
        _text.Dispose();
    }
}

/// <summary>
/// SD3 style: two CLIP encoders with projection on the world tokenizer (tokenizer/ and tokenizer_2/ are the same files, so
/// both read the same ids), the joint text sequence and pooled projection as the pipeline assembles them without T5
/// (<see cref="SD3PromptEncoder"/>), the SD3 transformer, and flow matching (<see cref="FlowTrainingObjective"/>) with the
/// config's shift and the run's weighting scheme.
/// </summary>
internal sealed class SD3Denoiser : BaseDenoiser
{
    private readonly SD3Transformer2DModel _transformer;
    private readonly CLIPTextModelWithProjection _clipL;
    private readonly CLIPTextModelWithProjection _clipG;
    private readonly SD3PromptEncoder _prompts;

    public SD3Denoiser(BaseModelConfig config, WorldTokenizer world, BaseTrainingOptions options, Generator init)
        : base(new FlowTrainingObjective(options.FlowMatching with { Shift = config.FlowShift }))
    {
        _transformer = new SD3Transformer2DModel(SD3TransformerConfig.Parse(config.TransformerJson()));
        _clipL = new CLIPTextModelWithProjection(ClipTextConfig.Parse(config.TextEncoderWithProjectionJson(world)));
        _clipG = new CLIPTextModelWithProjection(ClipTextConfig.Parse(config.TextEncoderWithProjectionJson(world)));
        DeterministicInit.Reset(_transformer, init);
        DeterministicInit.Reset(_clipL, init);
        DeterministicInit.Reset(_clipG, init);
        _prompts = new SD3PromptEncoder(_clipL, _clipG, null, _transformer.Config.JointAttentionDim);
        NamedParameters = [.. Prefixed("transformer", _transformer), .. Prefixed("text_encoder", _clipL), .. Prefixed("text_encoder_2", _clipG)];
    }

    public override string Component => "transformer";
    public override string PredictionType => FlowTrainingObjective.PredictionType;
    public override IReadOnlyList<(string Name, Parameter Parameter)> NamedParameters { get; }
    public override long DenoiserParameters => _transformer.parameters().Sum(p => p.numel());
    public override long TextParameters => _clipL.parameters().Concat(_clipG.parameters()).Sum(p => p.numel());

    public override void Train()
    {
        _transformer.train();
        _clipL.train();
        _clipG.train();
    }

    public override Tensor Predict(Tensor noisy, Tensor timesteps, Tensor ids)
    {
        var (prompt, pooled) = _prompts.Encode(ids, ids, null);                                 // [B, 154, 2D], [B, 2D]
        return _transformer.forward(noisy, prompt, pooled, timesteps.to(ScalarType.Float32));
    }

    public override void WriteComponents(string output, BaseModelConfig config, WorldTokenizer world)
    {
        Save(_transformer, output, "transformer", "diffusion_pytorch_model.safetensors", config.TransformerJson());
        Save(_clipL, output, "text_encoder", "model.safetensors", config.TextEncoderWithProjectionJson(world));
        Save(_clipG, output, "text_encoder_2", "model.safetensors", config.TextEncoderWithProjectionJson(world));
        world.Write(Path.Combine(output, "tokenizer_2"));
        AtomicFile.WriteText(Path.Combine(output, "scheduler", "scheduler_config.json"), config.FlowSchedulerJson());
        AtomicFile.WriteText(Path.Combine(output, "model_index.json"), BaseModelConfig.SD3ModelIndexJson());
    }

    public override void Dispose()
    {
        _transformer.Dispose();
        _clipL.Dispose();
        _clipG.Dispose();
    }
}

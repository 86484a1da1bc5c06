using CTCal.Contracts;
using CTCal.Core.Schedulers;
using CTCal.Core.Text;
using CTCal.Plugin.Models;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Onnx;

/// <summary>
/// The ONNX Runtime sessions of one model (plus its tokenizer and scheduler config), created once and shared by concurrent generations
/// (<see cref="InferenceSession.Run(RunOptions, IReadOnlyCollection{string}, IReadOnlyCollection{OrtValue}, IReadOnlyCollection{string})"/>
/// is thread-safe). Owns the sessions and their options; disposed when the model is unloaded.
/// </summary>
internal sealed class ModelSessions : IDisposable
{
    private readonly SessionOptions _options;
    private readonly Lazy<InferenceSession> _vaeEncoder;
    private readonly InferenceSession? _unet;

    private ModelSessions(OnnxModelFolder model, SessionOptions options, ExecutionProviderKind provider, IReadOnlyList<string> warnings)
    {
        Model = model;
        _options = options;
        Provider = provider;
        ProviderWarnings = warnings;
        _vaeEncoder = new Lazy<InferenceSession>(
            () => new InferenceSession(
                model.VaeEncoderPath ?? throw new ArgumentException($"Model '{model.Info.Id}' has no vae_encoder/model.onnx, so it cannot start from an image"),
                options),
            LazyThreadSafetyMode.ExecutionAndPublication);
        try
        {
            Tokenizer = ClipTokenizer.FromFolder(model.TokenizerFolder);
            SchedulerConfig = model.Scheduler ?? SchedulerConfig.Load(model.SchedulerConfigPath);
            TextEncoder = new InferenceSession(model.TextEncoderPath, options);
            if (model.IsSD3)
            {
                SD3 = new SD3Sessions(model, options);
            }
            else
            {
                _unet = new InferenceSession(model.UnetPath, options);
            }

            VaeDecoder = new InferenceSession(model.VaeDecoderPath, options);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public OnnxModelFolder Model { get; }

    /// <summary>The provider the sessions run on.</summary>
    public ExecutionProviderKind Provider { get; }

    /// <summary>Why preferred providers were skipped (empty when the first choice worked).</summary>
    public IReadOnlyList<string> ProviderWarnings { get; }

    public ClipTokenizer Tokenizer { get; } = null!;

    public SchedulerConfig SchedulerConfig { get; } = null!;

    public InferenceSession TextEncoder { get; } = null!;

    /// <summary>The UNet of an SD 1.x/2.x model (an SD3 model has a transformer, in <see cref="SD3"/>).</summary>
    public InferenceSession Unet => _unet ?? throw new InvalidOperationException($"Model '{Model.Info.Id}' is SD3: it has a transformer, no UNet");

    /// <summary>The SD3 parts, or null for an SD 1.x/2.x model.</summary>
    public SD3Sessions? SD3 { get; }

    public InferenceSession VaeDecoder { get; } = null!;

    /// <summary>The VAE encoder, loaded on first image-to-image use.</summary>
    public InferenceSession VaeEncoder => _vaeEncoder.Value;

    /// <summary>Creates the sessions on the first provider of <paramref name="preference"/> that can be appended.</summary>
    public static ModelSessions Create(
        OnnxModelFolder model,
        IReadOnlyList<ExecutionProviderKind> preference,
        SessionTuning tuning,
        ILogSink log)
    {
        var (options, used, warnings) = ExecutionProviderSelector.Create(preference, tuning, log);
        try
        {
            log.Log(LogSeverity.Information, $"Loading model {model.Info.Id} on {ExecutionProviderSelector.DisplayName(used)}");
            return new ModelSessions(model, options, used, warnings);
        }
        catch
        {
            options.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        TextEncoder?.Dispose();
        _unet?.Dispose();
        SD3?.Dispose();
        VaeDecoder?.Dispose();
        if (_vaeEncoder is { IsValueCreated: true })
        {
            _vaeEncoder.Value.Dispose();
        }

        _options.Dispose();
    }
}

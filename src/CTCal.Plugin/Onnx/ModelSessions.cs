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
    private readonly Lazy<InferenceSession> _shallowUnet;
    private readonly InferenceSession? _unet;

    private ModelSessions(OnnxModelFolder model, SessionOptions options, ExecutionProviderKind provider, IReadOnlyList<string> warnings)
    {
        Model = model;
        _options = options;
        Provider = provider;
        _vaeEncoder = new Lazy<InferenceSession>(
            () => new InferenceSession(
                model.VaeEncoderPath ?? throw new ArgumentException($"Model '{model.Info.Id}' has no vae_encoder/model.onnx, so it cannot start from an image"),
                options),
            LazyThreadSafetyMode.ExecutionAndPublication);
        _shallowUnet = new Lazy<InferenceSession>(
            () => model.StepCache is null
                ? throw new InvalidOperationException($"Model '{model.Info.Id}' has no step-cache graphs")
                : new InferenceSession(model.ShallowUnetPath, options),
            LazyThreadSafetyMode.ExecutionAndPublication);
        try
        {
            Tokenizer = ClipTokenizer.FromFolder(model.TokenizerFolder);
            SchedulerConfig = model.Scheduler ?? SchedulerConfig.Load(model.SchedulerConfigPath);
            TextEncoder = new InferenceSession(model.TextEncoderPath, options);
            if (model.IsSD3)
            {
                SD3 = new SD3Sessions(model, options);
                if (SD3.TextEncoder3 is null)
                {
                    warnings = [.. warnings, NoT5Note(model)];
                }
            }
            else
            {
                _unet = new InferenceSession(model.UnetPath, options);
            }

            VaeDecoder = new InferenceSession(model.VaeDecoderPath, options);
            LoadWarnings = warnings;
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

    /// <summary>
    /// Notes on how the model was loaded: why preferred providers were skipped, and that an SD3 model has no T5 (its
    /// part of the prompt is zeros). Every generation result carries them; the log has them once, at load.
    /// </summary>
    public IReadOnlyList<string> LoadWarnings { get; } = [];

    /// <summary>The note of an SD3 model without <c>text_encoder_3</c>.</summary>
    private static string NoT5Note(OnnxModelFolder model) =>
        $"Model '{model.Info.Id}' has no text_encoder_3 (T5): its part of the prompt embedding is zeros, as diffusers' StableDiffusion3Pipeline does without T5";

    public ClipTokenizer Tokenizer { get; } = null!;

    public SchedulerConfig SchedulerConfig { get; } = null!;

    public InferenceSession TextEncoder { get; } = null!;

    /// <summary>The UNet of an SD 1.x/2.x model (an SD3 model has a transformer, in <see cref="SD3"/>).</summary>
    public InferenceSession Unet => _unet ?? throw new InvalidOperationException($"Model '{Model.Info.Id}' is SD3: it has a transformer, no UNet");

    /// <summary>The SD3 parts, or null for an SD 1.x/2.x model.</summary>
    public SD3Sessions? SD3 { get; }

    public InferenceSession VaeDecoder { get; } = null!;

    /// <summary>The step-cache shallow UNet (<c>unet_shallow/model.onnx</c>), loaded on the first generation that caches steps.</summary>
    public InferenceSession ShallowUnet => _shallowUnet.Value;

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
            CheckProfile(model, used, warnings);
            if (PrecisionNote(model, used) is { } precisionNote)
            {
                log.Log(LogSeverity.Warning, precisionNote);
                warnings = [.. warnings, precisionNote];
            }

            log.Log(LogSeverity.Information, $"Loading model {model.Info.Id} on {ExecutionProviderSelector.DisplayName(used)}");
            var sessions = new ModelSessions(model, options, used, warnings);
            foreach (string note in sessions.LoadWarnings.Skip(warnings.Count))
            {
                log.Log(LogSeverity.Warning, note);
            }

            return sessions;
        }
        catch
        {
            options.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Refuses a model exported for a GPU provider (<c>--optimize cuda|directml</c>: GroupNorm and BiasSplitGelu, which
    /// ONNX Runtime's CPU provider does not implement) when its sessions would run on the CPU provider, with what to do,
    /// instead of ONNX Runtime's "Could not find an implementation for GroupNorm(1)" from deep inside the load.
    /// </summary>
    /// <exception cref="InvalidOperationException">The profile needs a GPU provider and the CPU provider was chosen.</exception>
    public static void CheckProfile(OnnxModelFolder model, ExecutionProviderKind used, IReadOnlyList<string> providerWarnings)
    {
        if (used != ExecutionProviderKind.Cpu || model.ExportProfile is not ("cuda" or "directml"))
        {
            return;
        }

        string why = providerWarnings.Count > 0 ? $" ({string.Join("; ", providerWarnings)})" : " (the plugin's executionProviders setting lists no GPU provider, or none could be used)";
        throw new InvalidOperationException(
            $"Model '{model.Info.Id}' was exported with --optimize {model.ExportProfile}, whose GroupNorm and BiasSplitGelu operators need a GPU provider, " +
            $"but it would run on the CPU provider here{why}; export it again with --optimize plain or cpu for this machine");
    }

    /// <summary>
    /// The note for a float16-compute model (<c>--precision fp16</c>) on the CPU provider, which runs it correctly but
    /// through Casts around every operator without a float16 kernel (most of them), so slower than the float32 export.
    /// </summary>
    public static string? PrecisionNote(OnnxModelFolder model, ExecutionProviderKind used) =>
        used == ExecutionProviderKind.Cpu && model.Precision == "fp16"
            ? $"Model '{model.Info.Id}' was exported with --precision fp16 (float16 compute, for GPU providers); the CPU provider runs it through casts to float32, " +
              "slower than an export with --precision fp32 or fp16-weights"
            : null;

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

        if (_shallowUnet is { IsValueCreated: true })
        {
            _shallowUnet.Value.Dispose();
        }

        _options.Dispose();
    }
}

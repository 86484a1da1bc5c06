using System.Composition;
using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Imaging;
using CTCal.Plugin.Onnx;
using CTCal.Plugin.Pipeline;

namespace CTCal.Plugin;

/// <summary><see cref="IImageGenerator"/> over the ONNX Stable Diffusion folders in the plugin's models folder.</summary>
[Export(typeof(IImageGenerator))]
[ExportMetadata(PluginMetadataKeys.Id, PluginInfo.GeneratorId)]
[ExportMetadata(PluginMetadataKeys.Name, PluginInfo.GeneratorName)]
[ExportMetadata(PluginMetadataKeys.Version, PluginInfo.Version)]
internal sealed class OnnxImageGenerator : IImageGenerator
{
    public const int MaxBatchCount = 64;
    public const int MaxSteps = 1000;
    public const int MaxSide = 4096;

    /// <summary>
    /// Opens the Debug log line each request writes when the log takes Debug lines: the milliseconds of each part of the
    /// generation (<see cref="StageTimings.Format"/>), e.g. for a benchmark's share of time outside the denoiser.
    /// </summary>
    public const string StageTimingsPrefix = "Stage times (ms) of";

    private readonly PluginRuntime _runtime;

    [ImportingConstructor]
    public OnnxImageGenerator(PluginRuntime runtime)
    {
        _runtime = runtime;
    }

    public Task<IReadOnlyList<ModelInfo>> ListModelsAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        IReadOnlyList<ModelInfo> models = _runtime.Catalog.Scan().Select(m => m.Info).ToArray();
        return Task.FromResult(models);
    }

    public Task<GenerationResult> GenerateAsync(
        GenerationRequest request,
        IProgress<GenerationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(request.Model, nameof(request.Model));
        var (modelId, stepCacheAsked) = StepCaching.ParseModel(request.Model);
        var model = _runtime.Catalog.Find(modelId);
        int stepCache = StepCaching.Resolve(stepCacheAsked, _runtime.Settings.StepCache, model, out string? stepCacheNote);
        byte[]? initRgb = null;
        if (request.InitImage is not null)
        {
            if (!model.Info.HasVaeEncoder)
            {
                throw new ArgumentException($"Model '{model.Info.Id}' has no vae_encoder/model.onnx, so it cannot start from an InitImage", nameof(request));
            }

            var (rgb, imageWidth, imageHeight) = PngDecoder.Decode(request.InitImage);
            if ((request.Width ?? imageWidth) != imageWidth || (request.Height ?? imageHeight) != imageHeight)
            {
                throw new ArgumentException($"InitImage is {imageWidth}x{imageHeight} but Width x Height is {request.Width ?? imageWidth}x{request.Height ?? imageHeight}", nameof(request));
            }

            request = request with { Width = imageWidth, Height = imageHeight };
            initRgb = rgb;
        }

        var parameters = Resolve(request, model.Info, _runtime.Settings.DefaultScheduler);
        if (stepCacheAsked is { } asked)
        {
            // the id as asked for, so the parameters (and the PNG's model field) reproduce the cached generation
            parameters = parameters with { Model = RequestModelId.WithStepCache(model.Info.Id, asked) };
        }

        return Task.Run(
            () =>
            {
                progress?.Report(new GenerationProgress(GenerationStage.LoadingModel, 0, parameters.BatchCount, 0, parameters.Steps));
                ModelSessions sessions;
                IDisposable lease;
                try
                {
                    (sessions, lease) = _runtime.Lease(model);
                }
                catch (Exception ex) when (OutOfMemory.Is(ex))
                {
                    throw OutOfMemoryError(parameters, null, ex);
                }

                using (lease)
                {
                    var warnings = new List<string>(sessions.LoadWarnings);
                    if (stepCacheNote is not null)
                    {
                        warnings.Add(stepCacheNote);
                    }

                    IReadOnlyList<GeneratedImage> images;
                    var timings = _runtime.Log.IsEnabled(LogSeverity.Debug) ? new StageTimings() : null;
                    try
                    {
                        images = StableDiffusionPipeline.Generate(
                            sessions, parameters, initRgb, request.PromptOverflow, _runtime.Settings.MemoryMode, warnings, progress, cancellationToken,
                            _runtime.Settings.IoBinding, timings, stepCache);
                    }
                    catch (Exception ex) when (OutOfMemory.Is(ex))
                    {
                        // The failed run's buffers are released with it; the sessions stay loaded for the next request.
                        throw OutOfMemoryError(parameters, sessions, ex);
                    }

                    foreach (string warning in warnings.Skip(sessions.LoadWarnings.Count))
                    {
                        _runtime.Log.Log(LogSeverity.Warning, warning);
                    }

                    if (timings is not null)
                    {
                        _runtime.Log.Log(
                            LogSeverity.Debug,
                            $"{StageTimingsPrefix} {parameters.Model} {parameters.Width}x{parameters.Height}, {parameters.Steps} steps, {parameters.BatchCount} image(s): {timings.Format()}");
                    }

                    return new GenerationResult(images, parameters, ExecutionProviderSelector.DisplayName(sessions.Provider), warnings);
                }
            },
            cancellationToken);
    }

    public bool UnloadModel(string modelId) => _runtime.Unload(modelId);

    /// <summary>
    /// The error for a request that ran out of memory: names the request, where the memory ran out (the
    /// <c>memoryLimitMiB</c> cap or the process) and what to lower. <paramref name="sessions"/> is null when the model load failed.
    /// </summary>
    private GenerationOutOfMemoryException OutOfMemoryError(GenerationParameters p, ModelSessions? sessions, Exception ex)
    {
        var settings = _runtime.Settings;
        string limit = settings.MemoryLimitMiB is int mib
            ? $"the plugin's ONNX Runtime memory limit (memoryLimitMiB {mib})"
            : "the memory available to the process";
        string message;
        if (sessions is null)
        {
            message = $"Not enough memory to load model '{p.Model}' for a {p.Width}x{p.Height} request: {limit} is smaller than the model needs " +
                $"({OutOfMemory.Describe(ex)}). Raise memoryLimitMiB or free memory; a smaller request does not help with loading.";
        }
        else
        {
            bool batchedGuidance = p.GuidanceScale > 1.0 && settings.MemoryMode != MemoryMode.Low;
            string provider = ExecutionProviderSelector.DisplayName(sessions.Provider);
            string lower = "lower Width and Height (memory grows with width x height, and with its square in the attention layers)";
            if (batchedGuidance)
            {
                lower += ", or set memoryMode \"low\" (guidance as two UNet or SD3 transformer calls of batch 1)";
            }

            if (settings.MemoryLimitMiB is not null)
            {
                lower += ", or raise memoryLimitMiB";
            }

            message = $"Not enough memory to generate {p.Width}x{p.Height} with model '{p.Model}' on {provider} " +
                $"({p.BatchCount} image(s), made one after another, so fewer images do not help; {(sessions.SD3 is null ? "UNet" : "transformer")} batch {(batchedGuidance ? 2 : 1)}): " +
                $"{limit} ran out ({OutOfMemory.Describe(ex)}). To fit, {lower}. The model stays loaded; smaller requests work.";
        }

        _runtime.Log.Log(LogSeverity.Warning, message, ex);
        return new GenerationOutOfMemoryException(message, p, ex);
    }

    /// <summary>Checks a request and fills in defaults; errors name the field and value.</summary>
    internal static GenerationParameters Resolve(GenerationRequest request, ModelInfo model, string defaultScheduler)
    {
        ArgumentNullException.ThrowIfNull(request.Prompt, nameof(request.Prompt));
        ArgumentNullException.ThrowIfNull(request.NegativePrompt, nameof(request.NegativePrompt));
        int width = request.Width ?? model.DefaultWidth;
        int height = request.Height ?? model.DefaultHeight;
        CheckSide(nameof(request.Width), width);
        CheckSide(nameof(request.Height), height);
        if (request.Steps is < 1 or > MaxSteps)
        {
            throw new ArgumentOutOfRangeException(nameof(request), $"Steps must be from 1 to {MaxSteps}, got {request.Steps}");
        }

        if (!double.IsFinite(request.GuidanceScale) || request.GuidanceScale < 0 || request.GuidanceScale > 100)
        {
            throw new ArgumentOutOfRangeException(nameof(request), $"GuidanceScale must be from 0 to 100, got {request.GuidanceScale}");
        }

        if (request.BatchCount is < 1 or > MaxBatchCount)
        {
            throw new ArgumentOutOfRangeException(nameof(request), $"BatchCount must be from 1 to {MaxBatchCount}, got {request.BatchCount}");
        }

        string scheduler = ResolveScheduler(request.Scheduler, defaultScheduler, model);

        if (request.InitImage is not null && (!double.IsFinite(request.Strength) || request.Strength < 0 || request.Strength > 1))
        {
            throw new ArgumentOutOfRangeException(nameof(request), $"Strength must be from 0 to 1, got {request.Strength}");
        }

        long seed = request.Seed ?? Random.Shared.NextInt64(0, 1L << 53);
        if (seed < 0 || seed > long.MaxValue - request.BatchCount)
        {
            throw new ArgumentOutOfRangeException(nameof(request), $"Seed must be from 0 to {long.MaxValue - request.BatchCount}, got {seed}");
        }

        return new GenerationParameters(
            model.Id, request.Prompt, request.NegativePrompt, width, height, request.Steps, request.GuidanceScale, seed, request.BatchCount, scheduler,
            request.InitImage is null ? null : request.Strength);
    }

    /// <summary>
    /// The sampler for <paramref name="model"/>: SD 1.x/2.x models take one of <see cref="SchedulerFactory.Names"/> (lower
    /// case; unset: the settings' default); SD3 models sample with FlowMatchEulerDiscreteScheduler (unset, or named in any
    /// case). A name of the other kind is refused, never mapped: a noise-prediction sampler cannot step a flow velocity.
    /// </summary>
    private static string ResolveScheduler(string? requested, string defaultScheduler, ModelInfo model)
    {
        bool sd3 = model.Family == ModelFamily.Sd3;
        string flow = FlowMatchEulerDiscreteScheduler.ClassName;
        string name = (requested ?? (sd3 ? flow : defaultScheduler)).Trim();
        bool isFlow = SchedulerFactory.FlowMatchNames.Contains(name, StringComparer.OrdinalIgnoreCase);
        bool isNoise = SchedulerFactory.Names.Contains(name.ToLowerInvariant());
        if (sd3 && isNoise)
        {
            throw new ArgumentException(
                $"Scheduler '{requested}' is a noise-prediction sampler for SD 1.x/2.x models; model '{model.Id}' is SD3 (flow matching) and samples with {flow} (name it or leave Scheduler unset)",
                nameof(requested));
        }

        if (!sd3 && isFlow)
        {
            throw new ArgumentException(
                $"Scheduler '{requested}' is the flow-matching sampler of SD3 models; model '{model.Id}' is {model.Family} (known: {string.Join(", ", SchedulerFactory.Names)})",
                nameof(requested));
        }

        if (!isFlow && !isNoise)
        {
            throw new ArgumentException(
                $"Unknown scheduler '{requested ?? defaultScheduler}' (known: {string.Join(", ", sd3 ? SchedulerFactory.FlowMatchNames : SchedulerFactory.Names)})", nameof(requested));
        }

        return isFlow ? flow : name.ToLowerInvariant();
    }

    private static void CheckSide(string name, int value)
    {
        if (value < 8 || value > MaxSide || value % 8 != 0)
        {
            throw new ArgumentOutOfRangeException(name, $"{name} must be a multiple of 8 from 8 to {MaxSide}, got {value}");
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.Schedulers;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Imaging;
using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// Text-to-image with an SD 1.x/2.x ONNX folder, following diffusers' StableDiffusionPipeline: encode prompt and
/// negative prompt, start from seeded Gaussian latents scaled by the scheduler's init sigma, run the sampler with
/// classifier-free guidance (eps = eps_uncond + g * (eps_text - eps_uncond), both halves in one batched UNet call),
/// decode latents / scaling_factor with the VAE, and encode a PNG carrying the parameters. SD3 models sample through
/// <see cref="SD3Pipeline"/> (flow matching, three text encoders) and share the decoding and PNG steps.
/// Stateless apart from the shared sessions: concurrent calls are independent.
/// </summary>
internal static class StableDiffusionPipeline
{
    /// <summary>Chunks of 77 tokens a long prompt may use when the UNet accepts any sequence length.</summary>
    public const int MaxPromptChunks = 8;

    /// <param name="ioBinding">
    /// Denoiser calls through <see cref="BoundDenoiser"/> (tensors bound once per request); false: each call's tensors
    /// created and copied (the reference path the bound one is tested against).
    /// </param>
    /// <param name="timings">Receives the time of each part (<see cref="StageTimings"/>), or null not to time.</param>
    /// <param name="stepCache">
    /// Step caching interval N (<see cref="StepCaching"/>): 1 samples as usual; N > 1 runs the full UNet at steps 0, N, 2N, ...
    /// and the shallow one between (bound or per call, as <paramref name="ioBinding"/> says).
    /// </param>
    public static IReadOnlyList<GeneratedImage> Generate(
        ModelSessions model,
        GenerationParameters p,
        byte[]? initRgb,
        PromptOverflow overflow,
        MemoryMode memoryMode,
        List<string> warnings,
        IProgress<GenerationProgress>? progress,
        CancellationToken cancellationToken,
        bool ioBinding = true,
        StageTimings? timings = null,
        int stepCache = 1)
    {
        using var run = new RunOptions();
        using var terminate = cancellationToken.Register(() => run.Terminate = true);
        try
        {
            return GenerateCore(model, p, initRgb, overflow, memoryMode, warnings, progress, run, ioBinding, timings, stepCache, cancellationToken);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("Generation was cancelled", cancellationToken);
        }
    }

    private static IReadOnlyList<GeneratedImage> GenerateCore(
        ModelSessions model,
        GenerationParameters p,
        byte[]? initRgb,
        PromptOverflow overflow,
        MemoryMode memoryMode,
        List<string> warnings,
        IProgress<GenerationProgress>? progress,
        RunOptions run,
        bool ioBinding,
        StageTimings? timings,
        int stepCache,
        CancellationToken ct)
    {
        progress?.Report(new GenerationProgress(GenerationStage.EncodingPrompt, 0, p.BatchCount, 0, p.Steps));
        Func<long, int, float[]> denoise;
        long[] latentShape;
        bool guided = p.GuidanceScale > 1.0;
        using var bound = new BoundSlot();
        if (model.SD3 is not null)
        {
            var sd3 = new SD3Pipeline(model, p, initRgb, memoryMode, warnings, run, timings);
            bound.Value = ioBinding ? sd3.Bind(guided) : null;
            denoise = (seed, index) => sd3.Denoise(seed, index, bound.Value, progress, ct);
            latentShape = sd3.LatentShape;
        }
        else
        {
            var unet = new UnetRunner(model, p.Width, p.Height, batchedGuidance: memoryMode != MemoryMode.Low, stepCache);
            long start = Stopwatch.GetTimestamp();
            var text = TextEmbeddings.Encode(model, p.Prompt, p.NegativePrompt, overflow, unet.MaxPromptChunks, run, warnings);
            timings?.Add(GenerationStep.TextEncoder, start);
            start = Stopwatch.GetTimestamp();
            float[]? initLatents = initRgb is null ? null : ImageToImage.Encode(model, initRgb, p.Width, p.Height, unet.LatentShape, run);
            timings?.Add(GenerationStep.VaeEncoder, start);
            bound.Value = ioBinding ? unet.Bind(text, guided) : null;
            denoise = (seed, index) => Denoise(model, unet, text, bound.Value, p, initLatents, seed, index, stepCache, run, timings, progress, ct);
            latentShape = unet.LatentShape;
        }

        ct.ThrowIfCancellationRequested();

        var images = new List<GeneratedImage>(p.BatchCount);
        for (int i = 0; i < p.BatchCount; i++)
        {
            long seed = p.Seed + i;
            float[] latents = denoise(seed, i);

            progress?.Report(new GenerationProgress(GenerationStage.Decoding, i, p.BatchCount, p.Steps, p.Steps));
            long start = Stopwatch.GetTimestamp();
            var (rgb, width, height) = Decode(model, latents, latentShape, run);
            timings?.Add(GenerationStep.VaeDecoder, start);
            if (width != p.Width || height != p.Height)
            {
                throw new InvalidDataException(
                    $"{model.Model.VaeDecoderPath}: decoded {width}x{height} for a {p.Width}x{p.Height} request (VAE scale factor {model.Model.VaeScaleFactor}, from vae_decoder/config.json or, without it, the decoder graph's upsampling)");
            }

            start = Stopwatch.GetTimestamp();
            images.Add(new GeneratedImage(i, seed, PngEncoder.Encode(rgb, width, height, PngText(p, seed, stepCache))));
            timings?.Add(GenerationStep.Png, start);
            ct.ThrowIfCancellationRequested();
        }

        progress?.Report(new GenerationProgress(GenerationStage.Done, p.BatchCount - 1, p.BatchCount, p.Steps, p.Steps));
        return images;
    }

    /// <summary>
    /// The sampler loop for one image; everything random comes from <c>GaussianNoise(seed)</c>. With
    /// <paramref name="bound"/> the scaled input goes straight into its buffer and the prediction comes from its bound
    /// output; without, through <see cref="UnetRunner"/>'s per-call path. With <paramref name="stepCache"/> N > 1, steps
    /// 0, N, 2N, ... of the schedule run the full UNet and the others the shallow one.
    /// </summary>
    private static float[] Denoise(
        ModelSessions model,
        UnetRunner unet,
        TextEmbeddings text,
        BoundDenoiser? bound,
        GenerationParameters p,
        float[]? initLatents,
        long seed,
        int index,
        int stepCache,
        RunOptions run,
        StageTimings? timings,
        IProgress<GenerationProgress>? progress,
        CancellationToken ct)
    {
        long loopStart = Stopwatch.GetTimestamp();
        var scheduler = SchedulerFactory.Create(p.Scheduler, model.SchedulerConfig);
        scheduler.SetTimesteps(p.Steps);
        var noise = new GaussianNoise(seed);

        var latents = new float[unet.LatentLength];
        noise.NextGaussian(latents);
        IReadOnlyList<double> timesteps = scheduler.Timesteps;
        if (initLatents is null)
        {
            // x_T = init_noise_sigma * N(0, I), [1, 4, H/8, W/8]
            float sigma = scheduler.InitNoiseSigma;
            for (int k = 0; k < latents.Length; k++)
            {
                latents[k] *= sigma;
            }
        }
        else
        {
            // diffusers StableDiffusionImg2ImgPipeline: skip the first (1 - strength) of the schedule and noise the
            // image latents to the first remaining timestep.
            timesteps = ImageToImage.RemainingTimesteps(timesteps, p.Strength ?? 1.0);
            latents = ImageToImage.NoisedStart(scheduler, initLatents, latents, timesteps);
        }

        bool guided = p.GuidanceScale > 1.0;
        var modelInput = bound?.Input ?? new float[latents.Length];
        int step = 0;
        int total = timesteps.Count;
        var cache = stepCache > 1 ? new StepCacheState(stepCache) : null;
        foreach (double t in timesteps)
        {
            ct.ThrowIfCancellationRequested();
            latents.CopyTo(modelInput, 0);
            scheduler.ScaleModelInput(modelInput, t);
            if (cache is not null) cache.Step = step;
            long start = Stopwatch.GetTimestamp();
            float[] eps = bound is not null ? bound.Predict(t, (float)p.GuidanceScale, run, shallow: cache is { IsFullStep: false })
                : guided ? unet.PredictGuided(modelInput, t, text, (float)p.GuidanceScale, run, cache)
                : unet.Predict(modelInput, t, text.Prompt, text.Length, text.Hidden, run, cache);
            if (timings is not null)
            {
                timings.Add(GenerationStep.Denoiser, start);
                timings.DenoiserCalls += guided && !unet.BatchedGuidance ? 2 : 1;
            }

            scheduler.Step(eps, t, latents, noise);
            step++;
            progress?.Report(new GenerationProgress(GenerationStage.Denoising, index, p.BatchCount, step, total));
        }

        timings?.Add(GenerationStep.SamplerLoop, loopStart);
        return latents;
    }

    /// <summary>The request's <see cref="BoundDenoiser"/>, or null; disposed with the request.</summary>
    private sealed class BoundSlot : IDisposable
    {
        public BoundDenoiser? Value { get; set; }

        public void Dispose() => Value?.Dispose();
    }

    /// <summary>VAE decode of latents / scaling_factor + shift_factor (0 but for SD3), then [-1, 1] CHW floats to 8-bit RGB rows.</summary>
    internal static (byte[] Rgb, int Width, int Height) Decode(ModelSessions model, float[] latents, long[] latentShape, RunOptions run)
    {
        var session = model.VaeDecoder;
        string where = model.Model.VaeDecoderPath;
        string inputName = session.InputMetadata.ContainsKey("latent_sample") ? "latent_sample" : session.InputNames[0];
        var meta = session.InputMetadata[inputName];
        float inverse = (float)(1.0 / model.Model.VaeScalingFactor);
        float shift = (float)model.Model.VaeShiftFactor;
        var scaled = new float[latents.Length];
        for (int k = 0; k < latents.Length; k++)
        {
            scaled[k] = latents[k] * inverse + shift;
        }

        using var input = OnnxTensors.Floats(meta, scaled, latentShape, where);
        string output = OnnxTensors.OutputName(session, "sample");
        using var outputs = session.Run(run, new[] { inputName }, new[] { input }, new[] { output });
        var image = OnnxTensors.ReadFloats(outputs[0], where, out var shape);
        if (shape.Length != 4 || shape[0] != 1 || shape[1] != 3)
        {
            throw new InvalidDataException($"{where}: output '{output}' has shape [{string.Join(", ", shape)}], expected [1, 3, height, width]");
        }

        int height = (int)shape[2], width = (int)shape[3], plane = height * width;
        var rgb = new byte[plane * 3];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int pixel = y * width + x;
                for (int c = 0; c < 3; c++)
                {
                    // image = clamp(x / 2 + 0.5, 0, 1) * 255, rounded
                    float v = Math.Clamp(image[c * plane + pixel] * 0.5f + 0.5f, 0f, 1f);
                    rgb[pixel * 3 + c] = (byte)MathF.Round(v * 255f);
                }
            }
        }

        return (rgb, width, height);
    }

    private static IEnumerable<KeyValuePair<string, string>> PngText(GenerationParameters p, long seed, int stepCache)
    {
        string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        var text = new Dictionary<string, string>
        {
            ["prompt"] = p.Prompt,
            ["negative_prompt"] = p.NegativePrompt,
            ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["steps"] = p.Steps.ToString(CultureInfo.InvariantCulture),
            ["guidance_scale"] = F(p.GuidanceScale),
            ["scheduler"] = p.Scheduler,
            ["model"] = p.Model,
            ["size"] = $"{p.Width}x{p.Height}",
            ["Software"] = $"CTCal.Plugin {PluginInfo.Version}",
        };
        if (p.Strength is double strength)
        {
            text["strength"] = F(strength);
        }

        if (stepCache > 1)
        {
            text["step_cache"] = stepCache.ToString(CultureInfo.InvariantCulture);
        }

        return text;
    }
}

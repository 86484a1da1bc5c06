using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Core.Schedulers;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// The sampler of an SD3 ONNX folder, following diffusers' StableDiffusion3Pipeline (0.29.2) and, with a start image,
/// StableDiffusion3Img2ImgPipeline: the prompt through CLIP-L, CLIP-G and (optional) T5 (<see cref="SD3TextEmbeddings"/>),
/// latents x_1 = N(0, I) from <c>GaussianNoise(seed)</c>, FlowMatchEulerDiscreteScheduler with the shift of
/// <c>scheduler/scheduler_config.json</c>, classifier-free guidance v = v_uncond + g (v_text - v_uncond) when g &gt; 1.
/// One instance per request (the prompt is encoded once); <see cref="StableDiffusionPipeline"/> decodes and encodes the
/// PNGs (latents / scaling_factor + shift_factor through the VAE decoder).
/// </summary>
internal sealed class SD3Pipeline
{
    private readonly ModelSessions _model;
    private readonly GenerationParameters _p;
    private readonly TransformerRunner _transformer;
    private readonly SD3TextEmbeddings _text;
    private readonly float[]? _initLatents;
    private readonly RunOptions _run;
    private readonly StageTimings? _timings;

    /// <summary>Encodes the prompts and (image-to-image) the start image.</summary>
    /// <param name="timings">Receives the time of each part, or null not to time.</param>
    public SD3Pipeline(ModelSessions model, GenerationParameters p, byte[]? initRgb, MemoryMode memoryMode, List<string> warnings, RunOptions run, StageTimings? timings = null)
    {
        if (p.Scheduler != FlowMatchEulerDiscreteScheduler.ClassName)
        {
            throw new ArgumentException($"Scheduler '{p.Scheduler}' cannot sample SD3 model '{p.Model}'; it uses {FlowMatchEulerDiscreteScheduler.ClassName}");
        }

        _model = model;
        _p = p;
        _run = run;
        _timings = timings;
        _transformer = new TransformerRunner(model, p.Width, p.Height, batchedGuidance: memoryMode != MemoryMode.Low);
        long start = Stopwatch.GetTimestamp();
        _text = SD3TextEmbeddings.Encode(model, p.Prompt, p.NegativePrompt, _transformer.JointAttentionDim, run, warnings);
        timings?.Add(GenerationStep.TextEncoder, start);
        start = Stopwatch.GetTimestamp();
        _initLatents = initRgb is null ? null : ImageToImage.Encode(model, initRgb, p.Width, p.Height, _transformer.LatentShape, run);
        timings?.Add(GenerationStep.VaeEncoder, start);
    }

    /// <summary>The request's transformer calls bound once (<see cref="TransformerRunner.Bind"/>); the caller disposes it.</summary>
    public BoundDenoiser Bind(bool guided) => _transformer.Bind(_text, guided);

    /// <summary>[1, 16, H/8, W/8] for SD3's VAE.</summary>
    public long[] LatentShape => _transformer.LatentShape;

    /// <summary>
    /// The flow-matching loop for one image; everything random comes from <c>GaussianNoise(seed)</c>. With
    /// <paramref name="bound"/> (from <see cref="Bind"/>) the latents are copied into its bound input and the velocity read
    /// from its bound output; without, through <see cref="TransformerRunner"/>'s per-call path.
    /// </summary>
    public float[] Denoise(long seed, int index, BoundDenoiser? bound, IProgress<GenerationProgress>? progress, CancellationToken ct)
    {
        long loopStart = Stopwatch.GetTimestamp();
        var scheduler = SchedulerFactory.Create(FlowMatchEulerDiscreteScheduler.ClassName, _model.SchedulerConfig);
        scheduler.SetTimesteps(_p.Steps);
        var noise = new GaussianNoise(seed);

        // x_1 = N(0, I), [1, C, H/f, W/f] (the flow's init sigma is 1)
        var latents = new float[_transformer.LatentLength];
        noise.NextGaussian(latents);
        IReadOnlyList<double> timesteps = scheduler.Timesteps;
        if (_initLatents is not null)
        {
            // scale_noise: x = sigma * noise + (1 - sigma) * x0 at the first remaining timestep (none left: x0)
            timesteps = RemainingTimesteps(timesteps, _p.Strength ?? 1.0);
            latents = ImageToImage.NoisedStart(scheduler, _initLatents, latents, timesteps);
        }

        bool guided = _p.GuidanceScale > 1.0;
        int step = 0;
        foreach (double t in timesteps)
        {
            ct.ThrowIfCancellationRequested();
            long start = Stopwatch.GetTimestamp();
            float[] velocity;
            if (bound is not null)
            {
                latents.CopyTo(bound.Input, 0);
                velocity = bound.Predict(t, (float)_p.GuidanceScale, _run);
            }
            else
            {
                velocity = guided
                    ? _transformer.PredictGuided(latents, t, _text, (float)_p.GuidanceScale, _run)
                    : _transformer.Predict(latents, t, _text, _run);
            }

            if (_timings is not null)
            {
                _timings.Add(GenerationStep.Denoiser, start);
                _timings.DenoiserCalls += guided && !_transformer.BatchedGuidance ? 2 : 1;
            }

            scheduler.Step(velocity, t, latents);
            step++;
            progress?.Report(new GenerationProgress(GenerationStage.Denoising, index, _p.BatchCount, step, timesteps.Count));
        }

        _timings?.Add(GenerationStep.SamplerLoop, loopStart);
        return latents;
    }

    /// <summary>
    /// StableDiffusion3Img2ImgPipeline.get_timesteps: init = min(steps * strength, steps) (not rounded down first, unlike
    /// the SD 1.x img2img pipeline), the first int(steps - init) timesteps skipped.
    /// </summary>
    public static IReadOnlyList<double> RemainingTimesteps(IReadOnlyList<double> timesteps, double strength)
    {
        int steps = timesteps.Count;
        double init = Math.Min(steps * strength, steps);
        int start = (int)Math.Max(steps - init, 0);
        return timesteps.Skip(start).ToArray();
    }
}

using CTCal.Core.Schedulers;
using CTCal.Trainer.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// Validation images: each prompt is sampled from the same seeded noise (seed + prompt index, CTCal.Core's
/// <see cref="GaussianNoise"/>) with a CTCal.Core sampler and classifier-free guidance (empty negative prompt), decoded by
/// the VAE, and the images are written side by side as one PNG grid, <c>validation/step-NNNNNNN.png</c> (atomically).
/// </summary>
public sealed class SamplingValidator : ITrainingValidator
{
    private readonly ITrainableDiffusionModel _model;
    private readonly SchedulerConfig _config;
    private readonly IReadOnlyList<string> _prompts;
    private readonly int _resolution;
    private readonly int _steps;
    private readonly string _scheduler;
    private readonly double _guidance;
    private readonly long _seed;

    public SamplingValidator(ITrainableDiffusionModel model, SchedulerConfig config, IReadOnlyList<string> prompts, int resolution,
        int steps = 20, string scheduler = "ddim", double guidance = 7.5, long seed = 0)
    {
        if (prompts.Count == 0) throw new ArgumentException("no validation prompts", nameof(prompts));
        if (steps <= 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "validation steps must be positive");
        SchedulerFactory.Create(scheduler, config); // fails early on an unknown name
        _model = model;
        _config = config;
        _prompts = prompts;
        _resolution = resolution;
        _steps = steps;
        _scheduler = scheduler;
        _guidance = guidance;
        _seed = seed;
    }

    public string Validate(long step, string outputFolder)
    {
        string folder = Path.Combine(outputFolder, "validation");
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, $"step-{step:D7}.png");
        var images = new List<float[]>();
        for (int i = 0; i < _prompts.Count; i++) images.Add(Sample(_prompts[i], _seed + i));
        SaveGrid(images, _resolution, path);
        return path;
    }

    /// <summary>One image for <paramref name="prompt"/>: CHW floats in [-1, 1].</summary>
    public float[] Sample(string prompt, long seed)
    {
        using var guard = new NativeCallGuard();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int side = _resolution / _model.VaeScaleFactor;
        int channels = _model.LatentChannels;
        var scheduler = SchedulerFactory.Create(_scheduler, _config);
        scheduler.SetTimesteps(_steps);
        var noise = new GaussianNoise(seed);
        var latents = new float[channels * side * side];
        noise.NextGaussian(latents);
        for (int i = 0; i < latents.Length; i++) latents[i] *= scheduler.InitNoiseSigma;

        long[] negative = _model.Tokenize("").InputIds, positive = _model.Tokenize(prompt).InputIds;
        var ids = tensor(negative.Concat(positive).ToArray(), new long[] { 2, positive.Length });
        var context = _model.EncodeText(ids);                                                   // [2, tokens, D] (+ pooled): uncond, cond
        var input = new float[latents.Length];
        foreach (double t in scheduler.Timesteps)
        {
            latents.CopyTo(input, 0);
            scheduler.ScaleModelInput(input, t);
            var x = tensor(input, new long[] { 1, channels, side, side }).expand(2, -1, -1, -1);
            var timesteps = full(new long[] { 2 }, t, dtype: ScalarType.Float32);
            var prediction = _model.PredictNoise(x, timesteps, context, null, out _);            // [2, C, h, w]
            var guided = prediction[0] + _guidance * (prediction[1] - prediction[0]);
            scheduler.Step(guided.contiguous().data<float>().ToArray(), t, latents, noise);
        }
        var image = _model.DecodeLatents(tensor(latents, new long[] { 1, channels, side, side }));
        return image[0].clamp(-1, 1).contiguous().data<float>().ToArray();
    }

    /// <summary>Writes CHW images of side <paramref name="side"/> next to each other as one PNG.</summary>
    public static void SaveGrid(IReadOnlyList<float[]> images, int side, string path)
    {
        int width = side * images.Count, plane = side * side;
        var grid = new float[3 * width * side];
        for (int n = 0; n < images.Count; n++)
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < side; y++)
                    Array.Copy(images[n], c * plane + y * side, grid, c * width * side + y * width + n * side, side);
        ImageLoader.SavePng(grid, width, side, path);
    }
}

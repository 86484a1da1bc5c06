using System.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Core.IO;
using CTCal.Trainer.Data;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.BaseModel;

/// <summary>Settings of a from-scratch VAE run.</summary>
public sealed record VaeTrainingOptions
{
    public int Steps { get; init; } = 2000;
    public int BatchSize { get; init; } = 16;
    public double LearningRate { get; init; } = 5e-4;
    public int WarmupSteps { get; init; } = 100;
    /// <summary>Weight of the KL term (per latent element, mean) against the per-pixel MSE + L1 reconstruction.</summary>
    public double KlWeight { get; init; } = 1e-4;
    public long Seed { get; init; } = 1;
    /// <summary>Images held fixed to measure the reconstruction error before and after.</summary>
    public int EvalImages { get; init; } = 16;
    /// <summary>Log a line every N steps (0: never).</summary>
    public int LogEvery { get; init; } = 50;

    public void Validate()
    {
        if (Steps <= 0) throw new ArgumentOutOfRangeException("steps", Steps, "steps must be positive");
        if (BatchSize <= 0) throw new ArgumentOutOfRangeException("batch-size", BatchSize, "batch-size must be positive");
        if (!(LearningRate > 0)) throw new ArgumentOutOfRangeException("lr", LearningRate, "lr must be positive");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException("warmup", WarmupSteps, "warmup must be >= 0");
        if (KlWeight < 0) throw new ArgumentOutOfRangeException("kl-weight", KlWeight, "kl-weight must be >= 0");
        if (EvalImages <= 0) throw new ArgumentOutOfRangeException("eval-images", EvalImages, "eval-images must be positive");
    }
}

/// <summary>What a VAE run measured: mean absolute reconstruction error (pixels in [-1, 1], through the posterior mean).</summary>
public sealed record VaeTrainingResult(int Steps, double InitialL1, double FinalL1, double FinalLoss, double ScalingFactor,
    double SecondsPerStep, IReadOnlyList<double> Losses, string WeightsPath);

/// <summary>
/// Trains an <see cref="AutoencoderKL"/> from scratch (the VAE objective of Kingma &amp; Welling with a small KL weight, as
/// the LDM autoencoders without their adversarial term): loss = MSE + L1 of decode(sample(encode(x))) against x, plus
/// KlWeight · mean KL(q(z|x) || N(0, I)); AdamW, linear warmup, gradient clipping at 1. The scaling factor written to the
/// config is 1 / std of the posterior means of the evaluation images (so scaled latents have unit variance, like SD's 0.18215).
/// </summary>
public static class VaeTrainer
{
    public static VaeTrainingResult Train(BaseModelConfig config, ImageCaptionDataset data, VaeTrainingOptions options, string outputFolder,
        Action<string>? log = null, CancellationToken cancellation = default)
    {
        options.Validate();
        config.Check(WorldTokenizer.ForSyntheticWorld());
        if (data.Resolution != config.ImageSize)
            throw new ArgumentException($"dataset resolution {data.Resolution} differs from the model's image size {config.ImageSize}");
        using var init = new Generator((ulong)options.Seed);
        using var generator = new Generator((ulong)options.Seed + 1);
        using var vae = new AutoencoderKL(VaeConfig.Parse(config.VaeJson()));
        DeterministicInit.Reset(vae, init);
        vae.train();
        var parameters = vae.parameters().ToList();
        using var optimizer = new AdamW(parameters, weightDecay: 0.0);
        var schedule = new LearningRateSchedule(LrScheduleKind.Constant, options.LearningRate, options.WarmupSteps, options.Steps);
        var order = new DataOrder(data.Records.Count, options.Seed);
        var evalIndices = Enumerable.Range(0, Math.Min(options.EvalImages, data.Records.Count)).ToList();
        using var evalPixels = BaseTrainingData.Pixels(data, evalIndices).Pixels.DetachFromDisposeScope();

        double initialL1 = ReconstructionL1(vae, evalPixels);
        var losses = new List<double>();
        var watch = Stopwatch.StartNew();
        int step = 0;
        for (; step < options.Steps && !cancellation.IsCancellationRequested; step++)
        {
            using var guard = new NativeCallGuard();
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            var (pixels, _) = BaseTrainingData.Pixels(data, Enumerable.Range(0, options.BatchSize).Select(_ => order.Next()));
            var (mean, logVar) = vae.Encode(pixels);
            var z = AutoencoderKL.Sample(mean, logVar, generator);
            var reconstruction = vae.Decode(z);
            var diff = reconstruction - pixels;
            var kl = (mean.square() + logVar.exp() - 1 - logVar).mul(0.5).mean();
            var loss = diff.square().mean() + diff.abs().mean() + options.KlWeight * kl;
            loss.backward();
            ClipGradients(parameters, 1.0);
            optimizer.Update(schedule.At(step));
            double value = loss.item<float>();
            if (!double.IsFinite(value)) throw new TrainingDivergedException($"VAE training diverged at step {step + 1} (loss {value}); lower --lr");
            losses.Add(value);
            if (options.LogEvery > 0 && (step + 1) % options.LogEvery == 0)
                log?.Invoke($"vae step {step + 1}/{options.Steps}: loss {Mean(losses, options.LogEvery):F5} (kl {kl.item<float>():F3}), {watch.Elapsed.TotalSeconds / (step + 1):F3} s/step");
        }
        double secondsPerStep = watch.Elapsed.TotalSeconds / Math.Max(1, step);
        vae.eval();
        double finalL1 = ReconstructionL1(vae, evalPixels);
        double scaling = ScalingFactor(vae, evalPixels);

        string folder = Path.Combine(outputFolder, "vae");
        Directory.CreateDirectory(folder);
        string weights = Path.Combine(folder, "diffusion_pytorch_model.safetensors");
        DiffusersWeights.Save(vae, weights, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteText(Path.Combine(folder, "config.json"), config.VaeJson(scaling));
        return new VaeTrainingResult(step, initialL1, finalL1, losses.Count > 0 ? Mean(losses, 50) : double.NaN, scaling, secondsPerStep, losses, weights);
    }

    /// <summary>Mean |decode(mean(encode(x))) - x| over <paramref name="pixels"/> (no grad).</summary>
    public static double ReconstructionL1(AutoencoderKL vae, Tensor pixels)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return (vae.forward(pixels) - pixels).abs().mean().item<float>();
    }

    private static double ScalingFactor(AutoencoderKL vae, Tensor pixels)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double std = vae.Encode(pixels).Mean.std().item<float>();
        return std > 1e-6 && double.IsFinite(std) ? Math.Round(1.0 / std, 5) : 1.0;
    }

    internal static void ClipGradients(IReadOnlyList<TorchSharp.Modules.Parameter> parameters, double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double sum = 0;
        foreach (var p in parameters) if (p.grad is { } g) sum += g.square().sum().item<float>();
        double norm = Math.Sqrt(sum);
        if (norm > maxNorm && double.IsFinite(norm))
            foreach (var p in parameters) p.grad?.mul_(maxNorm / (norm + 1e-6));
    }

    internal static double Mean(IReadOnlyList<double> values, int last) => values.Skip(Math.Max(0, values.Count - last)).Average();
}

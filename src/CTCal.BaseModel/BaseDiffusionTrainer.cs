using System.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Core.Text;
using CTCal.Trainer.Data;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.BaseModel;

/// <summary>Settings of a from-scratch base diffusion run.</summary>
public sealed record BaseTrainingOptions
{
    public int Steps { get; init; } = 4000;
    public int BatchSize { get; init; } = 32;
    public double LearningRate { get; init; } = 3e-4;
    public int WarmupSteps { get; init; } = 200;
    public LrScheduleKind LrSchedule { get; init; } = LrScheduleKind.Cosine;
    public double WeightDecay { get; init; } = 1e-2;
    public double EmaDecay { get; init; } = 0.999;
    /// <summary>Min-SNR-γ weighting (Hang et al. 2023); null disables it.</summary>
    public double? MinSnrGamma { get; init; } = 5.0;
    /// <summary>Probability that a sample trains with the empty prompt (classifier-free guidance).</summary>
    public double CaptionDropout { get; init; } = 0.1;
    public long Seed { get; init; } = 1;
    public int LogEvery { get; init; } = 50;
    /// <summary>Checkpoint every N steps into <c>&lt;out&gt;/checkpoints/</c> (0: never).</summary>
    public int SaveEvery { get; init; } = 500;
    /// <summary>Checkpoint to resume from (a path, or <c>latest</c> for the newest under the output folder); null starts fresh.</summary>
    public string? Resume { get; init; }
    /// <summary>
    /// End this command after this step of the <see cref="Steps"/> schedule, with a checkpoint and no model folder (null: run
    /// to the end). A later command with <c>--resume</c> continues; the learning-rate schedule is that of <see cref="Steps"/>.
    /// </summary>
    public int? StopAt { get; init; }
    /// <summary>The model family: SD1 (UNet, DDPM) or SD3 (joint transformer, flow matching; set <see cref="MinSnrGamma"/> to null).</summary>
    public BaseFamily Family { get; init; } = BaseFamily.SD1;
    /// <summary>SD3 family: the flow-matching weighting scheme (timestep density and loss weight); its shift is the config's <see cref="BaseModelConfig.FlowShift"/>.</summary>
    public FlowMatchingOptions FlowMatching { get; init; } = new();

    public void Validate()
    {
        if (Family == BaseFamily.SD3 && MinSnrGamma is not null)
            throw new ArgumentException("min-snr-gamma is a DDPM option; the SD3 family trains with flow matching (--weighting-scheme)", "min-snr-gamma");
        FlowMatching.Validate();
        if (StopAt is { } stop && (stop <= 0 || stop > Steps)) throw new ArgumentOutOfRangeException("stop-at", StopAt, $"stop-at must be in 1..{Steps} (the --steps schedule)");
        if (SaveEvery < 0) throw new ArgumentOutOfRangeException("save-every", SaveEvery, "save-every must be >= 0");
        if (Steps <= 0) throw new ArgumentOutOfRangeException("steps", Steps, "steps must be positive");
        if (BatchSize <= 0) throw new ArgumentOutOfRangeException("batch-size", BatchSize, "batch-size must be positive");
        if (!(LearningRate > 0)) throw new ArgumentOutOfRangeException("lr", LearningRate, "lr must be positive");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException("warmup", WarmupSteps, "warmup must be >= 0");
        if (!(EmaDecay > 0 && EmaDecay < 1)) throw new ArgumentOutOfRangeException("ema-decay", EmaDecay, "ema-decay must be in (0, 1)");
        if (!(CaptionDropout >= 0 && CaptionDropout < 1)) throw new ArgumentOutOfRangeException("caption-dropout", CaptionDropout, "caption-dropout must be in [0, 1)");
        if (MinSnrGamma is <= 0) throw new ArgumentOutOfRangeException("min-snr-gamma", MinSnrGamma, "min-snr-gamma must be positive");
    }
}

/// <summary>What a base run measured.</summary>
public sealed record BaseTrainingResult(int Steps, double FinalLoss, double SecondsPerStep, double WallSeconds, double CacheSeconds,
    IReadOnlyList<(int Step, double Loss)> LossCurve, long DenoiserParameters, long TextParameters)
{
    /// <summary>The family trained (its denoiser is a UNet for SD1, a transformer for SD3).</summary>
    public BaseFamily Family { get; init; }

    /// <summary>The step this run resumed at (0 for a fresh run); the steps before came from the earlier command(s).</summary>
    public int ResumedAtStep { get; init; }

    /// <summary>Stopped by cancellation: only a checkpoint was written (resume with <c>--resume latest</c>), no model folder.</summary>
    public bool Cancelled { get; init; }

    /// <summary>Stopped at <see cref="BaseTrainingOptions.StopAt"/> as asked: only a checkpoint was written, no model folder.</summary>
    public bool StoppedAtRequest { get; init; }
}

/// <summary>
/// Trains the base text-to-image model from scratch on a captioned dataset through a trained VAE: the text encoder(s) and
/// the denoiser both from random initialisation and jointly (the world's words have no pretrained embeddings, and a frozen
/// random encoder would leave colour and shape words tied only through random projections), full training. The family
/// (<see cref="BaseDenoiser"/>) gives the networks and the objective: SD1, a CLIP encoder + UNet with v-prediction or
/// epsilon as the scheduler config says (<see cref="DiffusionObjective"/> with Min-SNR-γ); SD3, two CLIP encoders with
/// projection + the SD3 transformer with flow matching (<see cref="FlowTrainingObjective"/>). Shared: captions replaced by
/// the empty prompt with probability <see cref="BaseTrainingOptions.CaptionDropout"/>, AdamW with linear warmup and a
/// cosine decay, gradient clipping at 1, EMA of all trained weights (the EMA weights are written). Latents are cached
/// once per image: the VAE posterior mean times its scaling factor.
/// </summary>
public static class BaseDiffusionTrainer
{
    /// <summary>
    /// Trains and writes the complete diffusers folder into <paramref name="outputFolder"/> (SD1: unet/, text_encoder/; SD3:
    /// transformer/, text_encoder/, text_encoder_2/, tokenizer_2/; both: vae/ copied from <paramref name="vaeFolder"/>,
    /// tokenizer/, scheduler/, model_index.json). When cancelled, writes only a
    /// checkpoint, so an earlier model in the folder is not replaced by a partly trained one.
    /// </summary>
    public static BaseTrainingResult Train(BaseModelConfig config, ImageCaptionDataset data, string vaeFolder, BaseTrainingOptions options,
        string outputFolder, Action<string>? log = null, CancellationToken cancellation = default)
    {
        options.Validate();
        var world = WorldTokenizer.ForSyntheticWorld();
        config.Check(world, options.Family);
        var total = Stopwatch.StartNew();
        var vaeFiles = ResolveVae(vaeFolder);
        var vaeConfig = VaeConfig.Load(vaeFiles.ConfigPath);
        if (vaeConfig.LatentChannels != config.LatentChannels || vaeConfig.DownscaleFactor != config.VaeScaleFactor)
            throw new ArgumentException($"{vaeFiles.ConfigPath}: latent_channels {vaeConfig.LatentChannels} / scale {vaeConfig.DownscaleFactor} do not match the base config ({config.LatentChannels} / {config.VaeScaleFactor})");
        if (data.Resolution != config.ImageSize)
            throw new ArgumentException($"dataset resolution {data.Resolution} differs from the model's image size {config.ImageSize}");

        string output = Path.GetFullPath(outputFolder);
        world.Write(Path.Combine(output, "tokenizer"));
        var tokenizer = ClipTokenizer.FromFiles(Path.Combine(output, "tokenizer", "vocab.json"), Path.Combine(output, "tokenizer", "merges.txt"));

        // Latent cache: one VAE pass per image (ScaleLatents: minus shift_factor, times scaling_factor).
        var cacheWatch = Stopwatch.StartNew();
        Tensor latents;
        var ids = new List<long[]>();
        using (var vae = PretrainedModels.LoadVae(vaeFiles))
        {
            var chunks = new List<Tensor>();
            for (int start = 0; start < data.Records.Count; start += 64)
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var (pixels, used) = BaseTrainingData.Pixels(data, Enumerable.Range(start, Math.Min(64, data.Records.Count - start)));
                chunks.Add(vae.ScaleLatents(vae.Encode(pixels).Mean).MoveToOuterDisposeScope());
                foreach (int i in used) ids.Add(tokenizer.Encode(data.Records[i].Caption).InputIds.Select(x => (long)x).ToArray());
            }
            latents = cat(chunks, 0).DetachFromDisposeScope();
            foreach (var c in chunks) c.Dispose();
        }
        double cacheSeconds = cacheWatch.Elapsed.TotalSeconds;
        using var latentCache = latents;
        using var idCache = tensor(ids.SelectMany(x => x).ToArray(), new long[] { ids.Count, ClipTokenizer.MaxLength });
        using var emptyIds = tensor(tokenizer.Encode("").InputIds.Select(x => (long)x).ToArray(), new long[] { 1, ClipTokenizer.MaxLength });
        log?.Invoke($"cached {ids.Count} latents {string.Join("x", latents.shape.Skip(1))} (std {latents.std().item<float>():F3}) in {cacheSeconds:F1} s");

        using var init = new Generator((ulong)options.Seed);
        using var generator = new Generator((ulong)options.Seed + 1);
        using var model = BaseDenoiser.Create(options.Family, config, world, options, init);
        var objective = model.Objective;
        model.Train();
        var named = model.NamedParameters;
        var parameters = named.Select(p => p.Parameter).ToList();
        foreach (var p in parameters) p.requires_grad = true;
        using var optimizer = new AdamW(parameters, weightDecay: options.WeightDecay);
        using var ema = new ExponentialMovingAverage(parameters, options.EmaDecay);
        var schedule = new LearningRateSchedule(options.LrSchedule, options.LearningRate, options.WarmupSteps, options.Steps);
        var order = new DataOrder(ids.Count, options.Seed);
        long denoiserParams = model.DenoiserParameters, textParams = model.TextParameters;
        log?.Invoke($"training {denoiserParams:N0} {model.Component} + {textParams:N0} text-encoder parameters, {options.Steps} steps of batch {options.BatchSize}");

        var losses = new List<double>();
        var curve = new List<(int, double)>();
        int step = 0;
        var checkpoints = new BaseCheckpoint(output, named, optimizer, ema, generator, options);
        string? resumeFrom = options.Resume == "latest" ? BaseCheckpoint.Latest(output) : options.Resume;
        if (options.Resume == "latest" && resumeFrom is null) log?.Invoke($"no checkpoint under {output}; starting fresh");
        if (resumeFrom is not null)
        {
            var state = checkpoints.Load(resumeFrom);
            step = state.Step;
            order = new DataOrder(ids.Count, options.Seed, state.Epoch, state.Position);
            curve.AddRange(state.Curve.Select(c => ((int)c[0], c[1])));
            losses.AddRange(state.RecentLosses);
            log?.Invoke($"resumed from {resumeFrom} at step {step}");
        }
        int firstStep = step;
        var watch = Stopwatch.StartNew();
        int end = Math.Min(options.Steps, options.StopAt ?? options.Steps);
        for (; step < end && !cancellation.IsCancellationRequested; step++)
        {
            if (options.SaveEvery > 0 && step > firstStep && step % options.SaveEvery == 0)
                log?.Invoke($"checkpoint {checkpoints.Save(step, order, curve, losses)}");
            using var guard = new NativeCallGuard();
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            var index = tensor(Enumerable.Range(0, options.BatchSize).Select(_ => (long)order.Next()).ToArray());
            var x0 = latentCache.index_select(0, index);
            var batchIds = idCache.index_select(0, index);
            var drop = rand(new long[] { options.BatchSize }, generator: generator).lt(options.CaptionDropout).unsqueeze(1); // [B, 1]
            batchIds = where(drop, emptyIds.expand(options.BatchSize, -1), batchIds);
            var noise = objective.SampleNoise(x0, generator);
            var t = objective.SampleTimesteps(options.BatchSize, x0.device, generator);
            var prediction = model.Predict(objective.AddNoise(x0, noise, t), t, batchIds);
            var loss = objective.Loss(prediction, objective.Target(x0, noise, t), t);
            loss.backward();
            double value = loss.item<float>();
            if (!double.IsFinite(value)) throw new TrainingDivergedException($"base training diverged at step {step + 1} (loss {value}); lower --lr");
            VaeTrainer.ClipGradients(parameters, 1.0);
            optimizer.Update(schedule.At(step));
            ema.Update();
            losses.Add(value);
            if (options.LogEvery > 0 && (step + 1) % options.LogEvery == 0)
            {
                double mean = VaeTrainer.Mean(losses, options.LogEvery);
                curve.Add((step + 1, mean));
                log?.Invoke($"{model.Component} step {step + 1}/{options.Steps}: loss {mean:F5}, lr {schedule.At(step):G3}, {watch.Elapsed.TotalSeconds / (step + 1 - firstStep):F3} s/step");
            }
        }
        double secondsPerStep = watch.Elapsed.TotalSeconds / Math.Max(1, step - firstStep);
        if (step > firstStep || resumeFrom is null) checkpoints.Save(step, order, curve, losses);
        if (curve.Count == 0 || curve[^1].Item1 != step) curve.Add((step, losses.Count > 0 ? VaeTrainer.Mean(losses, Math.Max(1, options.LogEvery)) : double.NaN));

        bool cancelled = step < end;
        bool complete = step >= options.Steps;
        if (complete)
        {
            ema.Swap(); // the averaged weights are the model
            model.WriteComponents(output, config, world);
            CopyVae(output, vaeFiles);
        }
        return new BaseTrainingResult(step, curve[^1].Item2, secondsPerStep, total.Elapsed.TotalSeconds, cacheSeconds, curve, denoiserParams, textParams)
        {
            Family = options.Family,
            ResumedAtStep = firstStep,
            Cancelled = cancelled,
            StoppedAtRequest = !cancelled && !complete,
        };
    }

    /// <summary>The newest checkpoint under <paramref name="outputFolder"/>'s <c>checkpoints/</c>, or null.</summary>
    public static string? LatestCheckpoint(string outputFolder) => BaseCheckpoint.Latest(Path.GetFullPath(outputFolder));

    /// <summary>The VAE component: <paramref name="folder"/> itself (config.json + weights) or its <c>vae/</c> subfolder.</summary>
    public static ComponentFiles ResolveVae(string folder)
    {
        string full = Path.GetFullPath(folder);
        string component = File.Exists(Path.Combine(full, "config.json")) ? full : Path.Combine(full, "vae");
        if (!File.Exists(Path.Combine(component, "config.json")))
            throw new FileNotFoundException($"VAE folder '{folder}' has no config.json (nor vae/config.json); run 'ctcal-train base vae' first", Path.Combine(component, "config.json"));
        return new ComponentFiles("vae", Path.Combine(component, "config.json"), DiffusersWeights.ResolveWeightsFile(component));
    }

    private static void CopyVae(string output, ComponentFiles vae)
    {
        string vaeOut = Path.Combine(output, "vae");
        Directory.CreateDirectory(vaeOut);
        if (!string.Equals(Path.GetDirectoryName(Path.GetFullPath(vae.ConfigPath))!, Path.GetFullPath(vaeOut), StringComparison.Ordinal))
        {
            AtomicFile.Copy(vae.WeightsPath, Path.Combine(vaeOut, "diffusion_pytorch_model.safetensors"));
            AtomicFile.Copy(vae.ConfigPath, Path.Combine(vaeOut, "config.json"));
        }
    }
}

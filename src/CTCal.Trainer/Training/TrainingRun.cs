using System.Diagnostics;
using CTCal.Core.Diagnostics;
using CTCal.Core.Models;
using CTCal.Core.Probes;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Data;
using CTCal.Trainer.Networks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using CTCal.Core.Text;

namespace CTCal.Trainer.Training;

/// <summary>
/// One fine-tuning run: LoRA (or full) training of a latent diffusion model with the diffusion loss plus, for
/// <see cref="TrainingMethod.Ctcal"/>, the CTCal term. Per micro-batch: encode images (no grad), draw noise and t_stu, run the
/// teacher pass at t_tea forward-only under no_grad (capturing the calibrated attn2 maps), run the student pass at t_stu
/// with grad (capturing the same maps), add (t_stu/T)·L_ctcal to the diffusion loss, backward. Every
/// <see cref="TrainingOptions.GradientAccumulation"/> micro-batches: clip (the UNet/text-encoder parameters by their own
/// norm, the attention autoencoder's separately, both to <see cref="TrainingOptions.MaxGradNorm"/>), AdamW update, EMA update. A step whose loss or
/// gradient is not finite is skipped (weights and optimizer untouched); after
/// <see cref="TrainingOptions.MaxNonFiniteSteps"/> in a row the run throws <see cref="TrainingDivergedException"/> without
/// writing a checkpoint, so the last good one stays intact. Vanilla runs the same code with the CTCal term off.
/// The run owns the adapters, autoencoder, optimizer and EMA; the model and dataset belong to the caller.
/// </summary>
public sealed partial class TrainingRun : IDisposable
{
    private readonly ITrainableDiffusionModel _model;
    private readonly ImageCaptionDataset _data;
    private readonly TrainingOptions _options;
    private readonly ITrainingObserver _observer;
    private readonly ITrainingObjective _objective;
    private readonly LoraAdapters? _unetLora;
    private readonly LoraAdapters? _textLora;
    private readonly AttentionMapAutoencoder? _autoencoder;
    private readonly CtcalLoss? _ctcal;
    private readonly IReadOnlyList<string> _mapLayers; // layers whose maps the teacher pass and the study measures capture
    private readonly List<(string Name, Parameter Parameter)> _trainable = [];
    private readonly int _modelTrainableCount; // the first entries of _trainable: UNet (+ text encoder); the autoencoder's follow
    private readonly AdamW _optimizer;
    private readonly ExponentialMovingAverage? _ema;
    private readonly LearningRateSchedule _schedule;
    private readonly Generator _generator;
    private DataOrder _order;
    private readonly NounSelector _nounSelector = new();
    private readonly Dictionary<int, (PromptTokens Tokens, IReadOnlyList<int[]> Nouns)> _prompts = new();
    private readonly List<double> _losses = [];
    private int _consecutiveNonFinite;
    private int _skippedSteps;
    private int _diffusionOnlySamples;
    private CancellationToken _cancellation;
    private readonly EncodingCache? _encodings; // --cache-encodings
    private readonly UNet2DConditionModel? _checkpointedUNet; // the UNet this run turned checkpointing on for (turned off on dispose)

    public TrainingRun(ITrainableDiffusionModel model, ImageCaptionDataset data, TrainingOptions options, string outputFolder,
        ITrainingObserver? observer = null, ITrainingValidator? validator = null)
    {
        _model = model;
        _data = data;
        _options = options;
        _observer = observer ?? NullObserver.Instance;
        OutputFolder = Path.GetFullPath(outputFolder);
        Validator = validator;
        Directory.CreateDirectory(OutputFolder);
        if (data.Resolution % model.VaeScaleFactor != 0)
            throw new ArgumentException($"resolution {data.Resolution} is not a multiple of the VAE scale factor {model.VaeScaleFactor}");

        _objective = model.CreateObjective(options);
        // Everything random draws from the run's own generators, never from torch's process-wide RNG.
        var init = new Generator((ulong)options.Seed);

        foreach (var p in model.TextEncoder.parameters()) p.requires_grad = false;
        if (options.FullFineTune)
        {
            foreach (var (name, p) in model.UNet.named_parameters())
            {
                p.requires_grad = true;
                _trainable.Add(($"{model.DenoiserComponent}.{name}", p));
            }
        }
        else
        {
            // --init-lora: adapters on exactly the file's modules, starting from its factors (a component it does not
            // adapt gets the default targets and a fresh start).
            using var initial = options.InitialLora is null ? null : InitialLora.Read(options.InitialLora, model, options.Lora);
            var unetTargets = initial?.Targets(model.DenoiserComponent);
            if (model.DenoiserComponent == LoraKeys.Transformer && options.Lora.Format == LoraSpelling.Kohya)
                throw new ArgumentException("the kohya LoRA spelling has no prefix for the SD3 transformer; write it as peft (the default) or diffusers");
            _unetLora = LoraAdapters.Attach(model.UNet, model.DenoiserComponent, unetTargets ?? model.DenoiserLoraTargets, options.Lora, init);
            if (unetTargets is not null) initial!.LoadInto(_unetLora);
            _trainable.AddRange(_unetLora.StateEntries().Select(e => (e.Key, (Parameter)e.Value)));
            if (options.Lora.TextEncoder)
            {
                if (model.DenoiserComponent == LoraKeys.Transformer)
                    throw new ArgumentException("text-encoder LoRA is not supported for SD3 (its two CLIP encoders); train the transformer LoRA only");
                var textTargets = initial?.Targets(LoraKeys.TextEncoder);
                _textLora = LoraAdapters.Attach(model.TextEncoder, LoraKeys.TextEncoder, textTargets ?? LoraOptions.TextEncoderTargets, options.Lora, init);
                if (textTargets is not null) initial!.LoadInto(_textLora);
                _trainable.AddRange(_textLora.StateEntries().Select(e => (e.Key, (Parameter)e.Value)));
            }
        }

        _modelTrainableCount = _trainable.Count;
        if (options.CacheEncodings) _encodings = new EncodingCache();
        if (options.GradientCheckpointing)
        {
            _checkpointedUNet = model.UNet as UNet2DConditionModel
                ?? throw new ArgumentException($"gradient checkpointing needs the diffusers UNet ({nameof(UNet2DConditionModel)}), not {model.UNet.GetType().Name}");
            _checkpointedUNet.GradientCheckpointing = true;
        }
        // Throws for a teacher the objective does not support (the teacher pass runs for CTCal and for the study measures).
        if (options.Method == TrainingMethod.Ctcal || options.AlignEvery > 0) _objective.TeacherTimestep(options.TeacherTimestep, options.TeacherSampling);
        if (options.Method == TrainingMethod.Ctcal)
        {
            CalibratedLayers = ResolveLayers(model.CrossAttentionLayers, options.Layers);
            _autoencoder = new AttentionMapAutoencoder();
            DeterministicInit.Reset(_autoencoder, init);
            _ctcal = new CtcalLoss(options.Ctcal with { NumTrainTimesteps = _objective.NumTrainTimesteps }, _autoencoder, CalibratedLayers);
            foreach (var (name, p) in _autoencoder.named_parameters()) _trainable.Add(($"attention_autoencoder.{name}", p));
            if (options.Teacher == TeacherSource.Oracle) _oracleTeacher = new OracleTeacher(model, data, CalibratedLayers);
        }
        else
        {
            CalibratedLayers = [];
        }
        _mapLayers = _ctcal is not null ? CalibratedLayers
            : options.AlignEvery > 0 ? ResolveLayers(model.CrossAttentionLayers, options.Layers) : [];

        _optimizer = new AdamW(_trainable.Select(t => t.Parameter), options.Beta1, options.Beta2, options.AdamEpsilon, options.WeightDecay);
        if (options.EmaDecay is { } decay) _ema = new ExponentialMovingAverage(_trainable.Select(t => t.Parameter), decay);
        _schedule = new LearningRateSchedule(options.LrSchedule, options.LearningRate, options.WarmupSteps, options.Steps);
        _generator = new Generator((ulong)options.Seed + 1);
        _order = new DataOrder(data.Records.Count, options.Seed);
    }

    /// <summary>The <c>--layers</c> prefix naming a premise probe's <c>probe.json</c>.</summary>
    public const string PremisePrefix = "premise:";

    public string OutputFolder { get; }
    public ITrainingValidator? Validator { get; set; }
    public IReadOnlyList<string> CalibratedLayers { get; }

    /// <summary>Optimizer steps done (including skipped ones).</summary>
    public long Step { get; private set; }

    /// <summary>Total loss of each step run by this object (NaN for skipped steps).</summary>
    public IReadOnlyList<double> Losses => _losses;

    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters => _trainable;

    public LoraAdapters? UNetLora => _unetLora;
    public LoraAdapters? TextEncoderLora => _textLora;
    public AttentionMapAutoencoder? Autoencoder => _autoencoder;

    /// <summary>Bytes held by the <c>--cache-encodings</c> cache (0 when off).</summary>
    public long CachedEncodingBytes => _encodings?.Bytes ?? 0;

    /// <summary>
    /// Resolves the CTCal layer option: <c>auto</c> = cross-attention layers with maps at 1/2 or 1/4 of the latent side (the
    /// 32x32 and 16x16 maps of SD at 512 px; all layers when the model has none there), <c>all</c>,
    /// <c>premise:&lt;probe.json&gt;</c> (the layers a premise probe of this model found worth calibrating,
    /// <see cref="PremiseProbeResult.CalibrationLayers"/>), or explicit module paths.
    /// </summary>
    public static IReadOnlyList<string> ResolveLayers(IReadOnlyList<AttentionLayerInfo> available, IReadOnlyList<string> requested)
    {
        if (available.Count == 0) throw new ArgumentException("the model reports no cross-attention layers to calibrate");
        if (requested.Count == 1 && requested[0].StartsWith(PremisePrefix, StringComparison.Ordinal))
        {
            string probe = requested[0][PremisePrefix.Length..];
            var chosen = PremiseProbeResult.Read(probe).CalibrationLayers();
            if (chosen.Count == 0)
                throw new ArgumentException($"layers: the premise probe {probe} found no layer whose teacher maps are worth calibrating toward");
            return ResolveLayers(available, chosen);
        }
        if (requested.Count == 1 && requested[0].Equals("all", StringComparison.OrdinalIgnoreCase)) return available.Select(l => l.Path).ToList();
        if (requested.Count == 1 && requested[0].Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            var mid = available.Where(l => l.Downscale is 2 or 4).Select(l => l.Path).ToList();
            return mid.Count > 0 ? mid : available.Select(l => l.Path).ToList();
        }
        var known = available.Select(l => l.Path).ToHashSet(StringComparer.Ordinal);
        foreach (var path in requested)
        {
            string normalised = path.EndsWith(".processor", StringComparison.Ordinal) ? path[..^".processor".Length] : path;
            if (!known.Contains(normalised))
                throw new ArgumentException($"layers: '{path}' is not a cross-attention layer of this UNet (e.g. '{available[0].Path}'; or use auto/all)");
        }
        return requested.Select(p => p.EndsWith(".processor", StringComparison.Ordinal) ? p[..^".processor".Length] : p).ToList();
    }

    /// <summary>Token ids and calibrated nouns of dataset record <paramref name="index"/> (cached).</summary>
    private (PromptTokens Tokens, IReadOnlyList<int[]> Nouns) Prompt(int index)
    {
        if (_prompts.TryGetValue(index, out var cached)) return cached;
        var record = _data.Records[index];
        var tokens = _model.Tokenize(record.Caption);
        var selection = _nounSelector.Select(tokens.Words, record.Subjects);
        foreach (var missing in selection.UnmatchedSubjects)
            _observer.Message("warn", $"{record.Origin}: subject '{missing}' does not occur in the caption (or was truncated); not calibrated");
        var result = (tokens, (IReadOnlyList<int[]>)selection.Nouns.Select(n => n.TokenPositions).ToList());
        _prompts[index] = result;
        return result;
    }

    /// <summary>Runs until <see cref="TrainingOptions.Steps"/> steps are done or <paramref name="cancellation"/> fires.</summary>
    public TrainingResult Run(CancellationToken cancellation = default)
    {
        int withoutNouns = Enumerable.Range(0, _data.Records.Count).Count(i => Prompt(i).Nouns.Count == 0);
        _observer.Started(new TrainingStart(_options.Steps, Step, _data.Records.Count, _data.Report.Skipped, withoutNouns,
            (int)_trainable.Sum(t => t.Parameter.numel()), CalibratedLayers, _options.Method.ToString().ToLowerInvariant()));
        if (_options.Method == TrainingMethod.Ctcal && withoutNouns > 0)
            _observer.Message("info", $"{withoutNouns} of {_data.Records.Count} captions have no noun to calibrate; they train with the diffusion loss only");

        string? lastCheckpoint = null;
        _cancellation = cancellation;
        FaultPoints.Reached("train.started");
        while (Step < _options.Steps)
        {
            if (cancellation.IsCancellationRequested)
            {
                lastCheckpoint = SaveCheckpoint();
                return new TrainingResult(Step, _skippedSteps, _diffusionOnlySamples, lastCheckpoint, null, Cancelled: true);
            }
            var report = TrainStep();
            _observer.StepDone(report);
            FaultPoints.Reached("train.after-step");
            if (_options.SaveEvery > 0 && Step % _options.SaveEvery == 0 && Step < _options.Steps) lastCheckpoint = SaveCheckpoint();
            if (Validator is not null && _options.ValidateEvery > 0 && Step % _options.ValidateEvery == 0 && _options.ValidationPrompts.Count > 0)
                RunValidation();
        }
        lastCheckpoint = SaveCheckpoint();
        string finalWeights = SaveFinalWeights();
        if (Validator is not null && _options.ValidationPrompts.Count > 0 && (_options.ValidateEvery == 0 || Step % _options.ValidateEvery != 0))
            RunValidation();
        return new TrainingResult(Step, _skippedSteps, _diffusionOnlySamples, lastCheckpoint, finalWeights, Cancelled: false);
    }

    private void RunValidation()
    {
        _ema?.Swap();
        try
        {
            ApplyAdapters(training: false);
            string path = Validator!.Validate(Step, OutputFolder);
            _observer.ValidationSaved(Step, path);
        }
        finally
        {
            _ema?.Swap();
        }
    }

    private void ApplyAdapters(bool training)
    {
        _unetLora?.Apply(training, _generator);
        _textLora?.Apply(training, _generator);
    }

    /// <summary>One optimizer step over <see cref="TrainingOptions.GradientAccumulation"/> micro-batches.</summary>
    public StepReport TrainStep()
    {
        using var guard = new NativeCallGuard();
        var watch = Stopwatch.StartNew();
        _optimizer.ZeroGrad();
        double loss = 0, diffusion = 0, ctcal = 0, pixel = 0, semantic = 0, reconstruction = 0, balance = 0;
        int nouns = 0, diffusionOnly = 0;
        bool finite = true;
        int accumulation = _options.GradientAccumulation;
        using var study = IsStudyStep(Step + 1, _options.AlignEvery) ? new StudyStep() : null;
        for (int micro = 0; micro < accumulation; micro++)
        {
            using var scope = NewDisposeScope();
            var parts = MicroStep(micro, accumulation, study);
            loss += parts.Loss / accumulation;
            diffusion += parts.Diffusion / accumulation;
            ctcal += parts.Ctcal / accumulation;
            pixel += parts.Pixel / accumulation;
            semantic += parts.Semantic / accumulation;
            reconstruction += parts.Reconstruction / accumulation;
            balance += parts.Balance / accumulation;
            nouns += parts.Nouns;
            diffusionOnly += parts.DiffusionOnly;
            finite &= double.IsFinite(parts.Loss);
        }

        // Gradients of every micro-batch are in, nothing is updated yet; a test can hold the process here and signal it.
        FaultPoints.Reached("train.mid-step", _cancellation);
        // Clipping per group: the UNet (+ text encoder) by its own norm, the attention autoencoder (CTCal only) by its own, so
        // the autoencoder's reconstruction gradient never scales the UNet's step. grad_norm reports the UNet group before clipping.
        var modelGroup = _trainable.Take(_modelTrainableCount).Select(t => t.Parameter).ToList();
        var autoencoderGroup = _trainable.Skip(_modelTrainableCount).Select(t => t.Parameter).ToList();
        double gradNorm = GradientNorm(modelGroup);
        double autoencoderNorm = GradientNorm(autoencoderGroup);
        finite &= double.IsFinite(gradNorm) && double.IsFinite(autoencoderNorm);
        double lr = _schedule.At(Step);
        if (finite)
        {
            if (_options.MaxGradNorm > 0 && gradNorm > _options.MaxGradNorm) ScaleGradients(modelGroup, _options.MaxGradNorm / (gradNorm + 1e-6));
            if (_options.MaxGradNorm > 0 && autoencoderNorm > _options.MaxGradNorm) ScaleGradients(autoencoderGroup, _options.MaxGradNorm / (autoencoderNorm + 1e-6));
            _optimizer.Update(lr);
            _ema?.Update();
            _consecutiveNonFinite = 0;
        }
        else
        {
            _optimizer.ZeroGrad();
            _skippedSteps++;
            _consecutiveNonFinite++;
        }
        Step++;
        _diffusionOnlySamples += diffusionOnly;
        _losses.Add(finite ? loss : double.NaN);
        var report = new StepReport
        {
            Step = Step, TotalSteps = _options.Steps, Loss = loss, Diffusion = diffusion, Ctcal = ctcal, Pixel = pixel,
            Semantic = semantic, Reconstruction = reconstruction, Balance = balance, LearningRate = lr, GradNorm = gradNorm,
            AutoencoderGradNorm = _autoencoder is null ? null : autoencoderNorm,
            Skipped = !finite, Nouns = nouns, DiffusionOnlySamples = diffusionOnly, Seconds = watch.Elapsed.TotalSeconds,
            AlignKl = study?.Alignment.Nouns > 0 ? study.Alignment.KlSum / study.Alignment.Nouns : null,
            AlignCos = study?.Alignment.Nouns > 0 ? study.Alignment.CosineSum / study.Alignment.Nouns : null,
            AlignNouns = study?.Alignment.Nouns,
            AlignEntropy = study?.Alignment.Nouns > 0 ? study.Alignment.EntropySum / study.Alignment.Nouns : null,
            GradDiffusion = StudyStep.Norm(study?.Diffusion), GradCtcal = StudyStep.Norm(study?.Ctcal),
            GradReconstruction = StudyStep.Norm(study?.Reconstruction),
        };
        if (!finite)
        {
            _observer.Message("warn", $"step {Step}: non-finite loss or gradient (loss {loss}, grad norm {gradNorm}{(_autoencoder is null ? "" : $", autoencoder grad norm {autoencoderNorm}")}); step skipped ({_consecutiveNonFinite} in a row)");
            if (_consecutiveNonFinite >= _options.MaxNonFiniteSteps)
            {
                _observer.StepDone(report);
                throw new TrainingDivergedException(
                    $"training diverged: {_consecutiveNonFinite} steps in a row had a non-finite loss or gradient (last at step {Step}); " +
                    $"weights were not updated by them and no checkpoint was written after the last good one. Lower --lr or enable clipping.");
            }
        }
        return report;
    }

    /// <summary>
    /// The diffusion loss on the first <paramref name="samples"/> usable records with noise and timesteps from a fresh generator
    /// seeded with <paramref name="seed"/> (no grad, no dropout; the run's RNG is untouched): comparable across steps.
    /// </summary>
    public double EvaluationLoss(int samples = 4, long seed = 1234)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var generator = new Generator((ulong)seed);
        ApplyAdapters(training: false);
        var indices = Enumerable.Range(0, _data.Records.Count).Take(samples).ToList();
        var images = indices.Select(i => _data.LoadImage(i)).Where(p => p is not null).Select(p => p!).ToList();
        if (images.Count == 0) throw new DatasetException($"{_data.Folder}: no image could be decoded for evaluation");
        int r = _data.Resolution;
        var pixels = tensor(images.SelectMany(p => p).ToArray(), new long[] { images.Count, 3, r, r });
        var idRows = indices.Take(images.Count).Select(i => Prompt(i).Tokens.InputIds).ToList();
        var ids = tensor(idRows.SelectMany(x => x).ToArray(), new long[] { images.Count, idRows[0].Length });
        var context = _model.EncodeText(ids);
        var latents = _model.EncodeImages(pixels, generator);
        var noise = _objective.SampleNoise(latents, generator);
        var t = _objective.SampleTimesteps(images.Count, latents.device, generator);
        var prediction = _model.PredictNoise(_objective.AddNoise(latents, noise, t), t, context, null, out _);
        return _objective.Loss(prediction, _objective.Target(latents, noise, t), t).item<float>();
    }

    private static double GradientNorm(IEnumerable<Parameter> group)
    {
        using var scope = NewDisposeScope();
        double sum = 0;
        foreach (var p in group)
            if (p.grad is { } g) sum += g.square().sum().item<float>();
        return Math.Sqrt(sum);
    }

    private static void ScaleGradients(IEnumerable<Parameter> group, double factor)
    {
        using var _ = no_grad();
        foreach (var p in group) p.grad?.mul_(factor);
    }

    public void Dispose()
    {
        if (_checkpointedUNet is not null) _checkpointedUNet.GradientCheckpointing = false;
        _unetLora?.Restore();
        _textLora?.Restore();
        _unetLora?.Dispose();
        _textLora?.Dispose();
        _autoencoder?.Dispose();
        _encodings?.Dispose();
        _optimizer.Dispose();
        _ema?.Dispose();
        _generator.Dispose();
    }
}

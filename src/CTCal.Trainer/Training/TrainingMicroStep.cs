using CTCal.Trainer.Calibration;
using CTCal.Trainer.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// One micro-batch of <see cref="TrainingRun.TrainStep"/>, in the order its pieces draw from the run's generator (the
/// order is part of exact resume): <see cref="NextBatch"/> (records in data order, undecodable images skipped) ->
/// <see cref="Noised"/> (text context, latents, noise, t_stu, x_t, target) -> <see cref="CalibratedSamples"/> (which samples
/// the CTCal term covers) -> <see cref="TeacherMaps"/> (no-grad pass at t_tea; <c>--teacher shuffled</c> then draws its derangement,
/// <see cref="ShuffledTeacher"/>) -> the student pass with grad ->
/// <see cref="CombineLosses"/> -> the study measures on measured steps (no draws, <see cref="MeasureAlignment"/>) -> backward. Tensors belong to the caller's dispose scope.
/// </summary>
public sealed partial class TrainingRun
{
    private readonly record struct MicroParts(double Loss, double Diffusion, double Ctcal, double Pixel, double Semantic,
        double Reconstruction, double Balance, int Nouns, int DiffusionOnly);

    /// <summary>A micro-batch after the forward noising: what the teacher and student passes share.</summary>
    private sealed record NoisedBatch(
        IReadOnlyList<(PromptTokens Tokens, IReadOnlyList<int[]> Nouns)> Prompts,
        TextConditioning Context, // [B, tokens, hidden] (+ pooled): with grad only when the text encoder has LoRA
        Tensor Latents,   // [B, C, h, w]
        Tensor Noise,     // [B, C, h, w]
        Tensor TStudent,  // [B] int64 (DDPM) or float32 (flow)
        Tensor Noisy,     // [B, C, h, w] = x_t at t_stu
        Tensor Target,    // [B, C, h, w]: noise, v or x0 by prediction type
        long TeacherSeed); // seed of the teacher-timestep draws (--teacher-sampling below), from the run seed, step and micro-batch

    private MicroParts MicroStep(int micro, int accumulation, StudyStep? study)
    {
        var (indices, pixels) = NextBatch();
        var batch = Noised(indices, pixels) with { TeacherSeed = TeacherSeed(_options.Seed, Step, micro) };
        double[] tValues = TimestepValues(batch.TStudent);
        var calibrated = _ctcal is null ? [] : CalibratedSamples(batch.Prompts.Select(p => p.Nouns.Count).ToList(), tValues, _objective.TeacherTimestep(_options.TeacherTimestep, _options.TeacherSampling));
        int size = indices.Count;
        bool runCtcal = calibrated.Count > 0;
        bool subset = runCtcal && calibrated.Count < size;
        var select = runCtcal ? tensor(calibrated.Select(b => (long)b).ToArray(), device: batch.Latents.device) : null;
        Tensor Pick(Tensor t) => subset ? t.index_select(0, select!) : t;

        IReadOnlyDictionary<string, Tensor>? modelTeacher = null; // the model's own teacher maps, for the study measures
        var teacherMaps = !runCtcal ? new Dictionary<string, Tensor>() : _options.Teacher switch
        {
            TeacherSource.Model => modelTeacher = TeacherMaps(batch, Pick),
            TeacherSource.Shuffled => ShuffledTeacher.Apply(modelTeacher = TeacherMaps(batch, Pick), calibrated.Select(b => batch.Prompts[b].Nouns).ToList(), _generator),
            TeacherSource.Oracle => OracleTeacherMaps(indices, calibrated, batch),
            _ => throw new ArgumentOutOfRangeException(nameof(TrainingOptions.Teacher), _options.Teacher, "unknown teacher source"),
        };
        var prediction = _model.PredictNoise(batch.Noisy, batch.TStudent, batch.Context, runCtcal ? _ctcal!.Layers.ToList() : null, out var studentMaps);
        var diffusionLoss = _objective.Loss(prediction, batch.Target, batch.TStudent);
        CtcalLossParts? parts = null;
        if (runCtcal)
        {
            var nounTokens = new NounTokens(calibrated.Select(b => batch.Prompts[b].Nouns));
            var studentSubset = subset ? studentMaps.ToDictionary(kv => kv.Key, kv => Pick(kv.Value)) : studentMaps;
            parts = _ctcal!.Compute(teacherMaps, studentSubset, nounTokens, Pick(batch.TStudent));
        }
        var (total, ctcalTerm) = CombineLosses(diffusionLoss, parts?.Total, calibrated.Count, size);
        if (study is not null)
        {
            MeasureAlignment(study, batch, tValues, modelTeacher, runCtcal ? studentMaps : null);
            double termScale = (calibrated.Count < size ? (double)calibrated.Count / size : 1.0) / accumulation; // as CombineLosses
            MeasureTermGradients(study, diffusionLoss / accumulation, parts?.AlignmentTerm is { } a ? a * termScale : null,
                parts?.ReconstructionTerm is { } r ? r * termScale : null);
        }
        (total / accumulation).backward();
        _unetLora?.AccumulateFactorGradients();
        _textLora?.AccumulateFactorGradients();

        return new MicroParts(total.item<float>(), diffusionLoss.item<float>(), ctcalTerm is null ? 0 : ctcalTerm.item<float>(),
            parts?.Pixel ?? 0, parts?.Semantic ?? 0, parts?.Reconstruction ?? 0, parts?.Balance ?? 0, parts?.Nouns ?? 0, size - calibrated.Count);
    }

    /// <summary>The next <see cref="TrainingOptions.BatchSize"/> records in data order with their pixels ([B, 3, R, R]).</summary>
    private (List<int> Indices, Tensor Pixels) NextBatch()
    {
        int batch = _options.BatchSize;
        var indices = new List<int>(batch);
        var pixels = new List<float[]>(batch);
        int failures = 0;
        while (indices.Count < batch)
        {
            int index = _order.Next();
            var image = _data.LoadImage(index);
            if (image is null)
            {
                if (++failures > _data.Records.Count)
                    throw new DatasetException($"{_data.Folder}: no image of the dataset could be decoded");
                _observer.Message("warn", _data.Report.Problems[^1] + " (skipped)");
                continue;
            }
            indices.Add(index);
            pixels.Add(image);
        }
        int r = _data.Resolution;
        return (indices, tensor(pixels.SelectMany(p => p).ToArray(), new long[] { batch, 3, r, r }));
    }

    /// <summary>Prompts, text context, latents (no grad), noise, t_stu, x_t and the target: the forward process q(x_t | x_0).</summary>
    private NoisedBatch Noised(List<int> indices, Tensor pixels)
    {
        var prompts = indices.Select(Prompt).ToList();
        var ids = tensor(prompts.SelectMany(p => p.Tokens.InputIds).ToArray(), new long[] { indices.Count, prompts[0].Tokens.InputIds.Length });
        ApplyAdapters(training: true);
        TextConditioning context;
        if (_textLora is not null) context = _model.EncodeText(ids);
        else if (_encodings is not null) context = _encodings.Text(_model, prompts.Select(p => p.Tokens.InputIds).ToList());
        else using (no_grad()) context = _model.EncodeText(ids);
        Tensor latents;
        if (_encodings is not null) latents = _encodings.Latents(_model, indices, pixels, _generator);
        else using (no_grad()) latents = _model.EncodeImages(pixels, _generator);
        var noise = _objective.SampleNoise(latents, _generator);
        var tStudent = _objective.SampleTimesteps(indices.Count, latents.device, _generator);
        var noisy = _objective.AddNoise(latents, noise, tStudent);
        var target = _objective.Target(latents, noise, tStudent);
        return new NoisedBatch(prompts, context, latents, noise, tStudent, noisy, target, 0);
    }

    /// <summary>
    /// The samples the CTCal term covers: those with at least one noun whose student timestep is above the teacher's
    /// (t_stu &lt;= t_tea gives no sharper teacher, so those samples train with the diffusion loss only).
    /// </summary>
    internal static List<int> CalibratedSamples(IReadOnlyList<int> nounsPerSample, IReadOnlyList<double> studentTimesteps, double teacherTimestep)
    {
        if (nounsPerSample.Count != studentTimesteps.Count)
            throw new ArgumentException($"{nounsPerSample.Count} noun counts for {studentTimesteps.Count} timesteps");
        var result = new List<int>(nounsPerSample.Count);
        for (int b = 0; b < nounsPerSample.Count; b++)
            if (nounsPerSample[b] > 0 && studentTimesteps[b] > teacherTimestep) result.Add(b);
        return result;
    }

    /// <summary>The values of a [B] timestep tensor (int64 or float) as doubles (exact for both).</summary>
    internal static double[] TimestepValues(Tensor timesteps) =>
        timesteps.dtype == ScalarType.Int64 ? timesteps.data<long>().Select(v => (double)v).ToArray()
            : timesteps.to(ScalarType.Float64).cpu().data<double>().ToArray();

    /// <summary>
    /// The teacher pass: the calibrated samples re-noised with the same noise at t_tea, run through the UNet without grad,
    /// capturing the calibrated layers' attention maps (the student maps are pulled toward these; they get no gradient).
    /// </summary>
    private IReadOnlyDictionary<string, Tensor> TeacherMaps(NoisedBatch batch, Func<Tensor, Tensor> pick)
    {
        using var _ = no_grad();
        using var draws = _options.TeacherSampling == TeacherSampling.Fixed ? null : new Generator((ulong)batch.TeacherSeed);
        var tTeacher = _objective.TeacherTimesteps(pick(batch.TStudent), _options.TeacherTimestep, _options.TeacherSampling, draws!).to(batch.Latents.device);
        var noisyTeacher = _objective.AddNoise(pick(batch.Latents), pick(batch.Noise), tTeacher);
        _model.PredictNoise(noisyTeacher, tTeacher, batch.Context.Detach().Map(pick), _mapLayers.ToList(), out var maps);
        return maps;
    }

    /// <summary>
    /// The seed of a micro-batch's teacher-timestep draws: a fixed function of the run seed, the step and the micro-batch,
    /// so the draws never touch the run's generator (the study's teacher pass of a vanilla run draws the same) and a resumed
    /// run draws what the uninterrupted one did.
    /// </summary>
    internal static long TeacherSeed(long seed, long step, int micro) => unchecked(seed * 1_000_003L + step * 1_009L + micro + 0x5EED);

    /// <summary>
    /// Total loss = diffusion loss + the CTCal term, the term (a mean over the <paramref name="calibrated"/> samples) scaled
    /// to a batch mean in which the other samples count as 0. Returns the total and the scaled term (null without one).
    /// </summary>
    internal static (Tensor Total, Tensor? Ctcal) CombineLosses(Tensor diffusion, Tensor? ctcal, int calibrated, int batch)
    {
        if (ctcal is null || calibrated == 0) return (diffusion, null);
        var scaled = calibrated < batch ? ctcal * ((double)calibrated / batch) : ctcal;
        return (diffusion + scaled, scaled);
    }
}

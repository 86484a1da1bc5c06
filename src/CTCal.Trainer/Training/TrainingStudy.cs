using CTCal.Trainer.Calibration;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// The study measures (issue #14, <see cref="TrainingOptions.AlignEvery"/>): on step 1 and every N-th step, for both methods
/// on the same steps and the same samples (those with a noun and t_stu &gt; t_tea, whatever the method), the agreement of the
/// student's noun maps with the model teacher's (<see cref="AlignmentMeasure"/>). They never change training: they run
/// under no_grad, draw nothing from the run's generator, and vanilla's extra passes (the teacher pass at t_tea and a
/// capturing copy of the student pass; vanilla's own student pass stays on the fused attention path) only read the
/// weights. CTCal reuses its teacher maps (before any shuffling: the measure is always against the model's own teacher)
/// and its student maps.
/// </summary>
public sealed partial class TrainingRun
{
    /// <summary>What the study measures collected over the micro-batches of one step.</summary>
    private sealed class StudyStep
    {
        public AlignmentSums Alignment;
    }

    /// <summary>Step numbers (1-based, as reported) that are measured: 1 and every multiple of <see cref="TrainingOptions.AlignEvery"/>.</summary>
    internal static bool IsStudyStep(long step, int alignEvery) => alignEvery > 0 && (step == 1 || step % alignEvery == 0);

    /// <summary>
    /// Adds the alignment of this micro-batch's measured samples. <paramref name="modelTeacher"/>: the CTCal run's teacher maps
    /// of its calibrated samples (null: run the teacher pass here); <paramref name="studentMaps"/>: the CTCal run's captured
    /// student maps of the whole micro-batch (null: run a capturing student pass here without grad).
    /// </summary>
    private void MeasureAlignment(StudyStep study, NoisedBatch batch, IReadOnlyList<long> studentTimesteps,
        IReadOnlyDictionary<string, Tensor>? modelTeacher, IReadOnlyDictionary<string, Tensor>? studentMaps)
    {
        var measured = CalibratedSamples(batch.Prompts.Select(p => p.Nouns.Count).ToList(), studentTimesteps, _options.TeacherTimestep);
        if (measured.Count == 0) return;
        using var _ = no_grad();
        int size = batch.Prompts.Count;
        var select = tensor(measured.Select(b => (long)b).ToArray(), device: batch.Latents.device);
        Tensor Pick(Tensor t) => measured.Count < size ? t.index_select(0, select) : t;

        var teacher = modelTeacher ?? TeacherMaps(batch, Pick, measured.Count);
        IReadOnlyDictionary<string, Tensor> student;
        if (studentMaps is not null)
        {
            student = studentMaps.ToDictionary(kv => kv.Key, kv => Pick(kv.Value.detach()));
        }
        else
        {
            _model.PredictNoise(Pick(batch.Noisy), Pick(batch.TStudent), Pick(batch.Context.detach()), _mapLayers.ToList(), out var maps);
            student = maps;
        }
        var nouns = new NounTokens(measured.Select(b => batch.Prompts[b].Nouns));
        study.Alignment += AlignmentMeasure.Compute(teacher, student, nouns, _mapLayers, _options.Ctcal.MapResolution);
    }
}

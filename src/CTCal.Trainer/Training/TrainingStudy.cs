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
    private sealed class StudyStep : IDisposable
    {
        public AlignmentSums Alignment;
        /// <summary>Per-term gradients summed over the micro-batches (as the step's gradient is), one tensor per parameter.</summary>
        public List<Tensor>? Diffusion, Ctcal, Reconstruction;

        public static void Add(ref List<Tensor>? sum, IReadOnlyList<Tensor> gradients)
        {
            if (sum is null)
            {
                sum = gradients.Select(g => g.detach().to(ScalarType.Float64).DetachFromDisposeScope()).ToList();
                return;
            }
            using var _ = no_grad();
            for (int i = 0; i < sum.Count; i++) sum[i].add_(gradients[i]);
        }

        /// <summary>The L2 norm of a summed gradient (null when the term never ran).</summary>
        public static double? Norm(List<Tensor>? sum)
        {
            if (sum is null) return null;
            using var scope = NewDisposeScope();
            return Math.Sqrt(sum.Sum(g => g.square().sum().item<double>()));
        }

        public void Dispose()
        {
            foreach (var list in new[] { Diffusion, Ctcal, Reconstruction })
                foreach (var g in list ?? []) g.Dispose();
        }
    }

    /// <summary>Step numbers (1-based, as reported) that are measured: 1 and every multiple of <see cref="TrainingOptions.AlignEvery"/>.</summary>
    internal static bool IsStudyStep(long step, int alignEvery) => alignEvery > 0 && (step == 1 || step % alignEvery == 0);

    /// <summary>
    /// Adds the alignment of this micro-batch's measured samples. <paramref name="modelTeacher"/>: the CTCal run's teacher maps
    /// of its calibrated samples (null: run the teacher pass here); <paramref name="studentMaps"/>: the CTCal run's captured
    /// student maps of the whole micro-batch (null: run a capturing student pass here without grad).
    /// </summary>
    private void MeasureAlignment(StudyStep study, NoisedBatch batch, IReadOnlyList<double> studentTimesteps,
        IReadOnlyDictionary<string, Tensor>? modelTeacher, IReadOnlyDictionary<string, Tensor>? studentMaps)
    {
        var measured = CalibratedSamples(batch.Prompts.Select(p => p.Nouns.Count).ToList(), studentTimesteps, _objective.TeacherTimestep(_options.TeacherTimestep, _options.TeacherSampling));
        if (measured.Count == 0) return;
        using var _ = no_grad();
        int size = batch.Prompts.Count;
        var select = tensor(measured.Select(b => (long)b).ToArray(), device: batch.Latents.device);
        Tensor Pick(Tensor t) => measured.Count < size ? t.index_select(0, select) : t;

        var teacher = modelTeacher ?? TeacherMaps(batch, Pick);
        IReadOnlyDictionary<string, Tensor> student;
        if (studentMaps is not null)
        {
            student = studentMaps.ToDictionary(kv => kv.Key, kv => Pick(kv.Value.detach()));
        }
        else
        {
            _model.PredictNoise(Pick(batch.Noisy), Pick(batch.TStudent), batch.Context.Detach().Map(Pick), _mapLayers.ToList(), out var maps);
            student = maps;
        }
        var nouns = new NounTokens(measured.Select(b => batch.Prompts[b].Nouns));
        study.Alignment += AlignmentMeasure.Compute(teacher, student, nouns, _mapLayers, _options.Ctcal.MapResolution);
    }

    /// <summary>
    /// Adds this micro-batch's per-term gradients: of the diffusion loss and of the CTCal alignment part (pixel + semantic +
    /// balance) w.r.t. the UNet (and text-encoder) trainable parameters (LoRA A/B, or every UNet weight with --full), and of the
    /// reconstruction part w.r.t. the autoencoder (the only parameters it reaches; its gradient on the UNet is exactly 0).
    /// Each term is taken as it enters the loss (weights, t_stu/T, the calibrated-fraction scale, 1/accumulation), so the
    /// step's UNet gradient is grad_diffusion + grad_ctcal as vectors. Uses autograd.grad with retain_graph: no .grad is
    /// touched and the following backward is unchanged.
    /// </summary>
    private void MeasureTermGradients(StudyStep study, Tensor diffusion, Tensor? alignment, Tensor? reconstruction)
    {
        var sources = GradientSources();
        StudyStep.Add(ref study.Diffusion, ParameterGradients(Gradients(diffusion, sources)));
        if (_ctcal is null) return;
        var model = alignment is null ? sources.Select(s => zeros_like(s)).ToList() : Gradients(alignment, sources);
        StudyStep.Add(ref study.Ctcal, ParameterGradients(model));
        var autoencoder = _autoencoder!.parameters().Select(p => (Tensor)p).ToList();
        StudyStep.Add(ref study.Reconstruction, reconstruction is null ? autoencoder.Select(p => zeros_like(p)).ToList() : Gradients(reconstruction, autoencoder));
    }

    /// <summary>The tensors the UNet/text-encoder gradient lands on: the adapted layer weights (LoRA) or the UNet parameters (--full).</summary>
    private List<Tensor> GradientSources() => _unetLora is null
        ? _trainable.Take(_modelTrainableCount).Select(t => (Tensor)t.Parameter).ToList()
        : LoraLayers().Select(l => (Tensor)l.Target.weight!).ToList();

    private IEnumerable<LoraLayer> LoraLayers() => _unetLora!.Layers.Concat(_textLora?.Layers ?? []);

    /// <summary>d(term)/d(inputs) without touching .grad; a zero-valued dependence on every input keeps unused ones defined (zeros).</summary>
    private static List<Tensor> Gradients(Tensor term, IReadOnlyList<Tensor> inputs)
    {
        var anchored = inputs.Aggregate(term, (sum, input) => sum + input.sum() * 0.0);
        return autograd.grad([anchored], inputs.ToList(), retain_graph: true).ToList();
    }

    /// <summary>Source gradients -> trainable-parameter gradients (LoRA: the exact factor gradients, A then B per layer).</summary>
    private List<Tensor> ParameterGradients(List<Tensor> sourceGradients)
    {
        if (_unetLora is null) return sourceGradients;
        var result = new List<Tensor>(2 * sourceGradients.Count);
        foreach (var (layer, g) in LoraLayers().Zip(sourceGradients))
        {
            var (a, b) = layer.FactorGradients(g);
            result.Add(a);
            result.Add(b);
        }
        return result;
    }
}

using static TorchSharp.torch;

namespace CTCal.Trainer.Calibration;

/// <summary>Sums of a scale-free student-vs-teacher agreement over the nouns of one micro-batch (means: divide by <see cref="Nouns"/>).</summary>
/// <param name="KlSum">Sum over nouns of KL(teacher || student), the maps read as spatial distributions.</param>
/// <param name="CosineSum">Sum over nouns of the cosine similarity of the flattened maps.</param>
/// <param name="Nouns">Nouns measured.</param>
/// <param name="EntropySum">Sum over nouns of the student map's spatial entropy divided by log(pixels): 1 for a uniform
/// (content-free) map, 0 for a single pixel. It tells a real agreement from maps that agree because they show nothing.</param>
public readonly record struct AlignmentSums(double KlSum, double CosineSum, int Nouns, double EntropySum = 0)
{
    public static AlignmentSums operator +(AlignmentSums a, AlignmentSums b) =>
        new(a.KlSum + b.KlSum, a.CosineSum + b.CosineSum, a.Nouns + b.Nouns, a.EntropySum + b.EntropySum);
}

/// <summary>
/// How well the student's noun maps agree with the teacher's, as a study measure that is the same for every method (issue
/// #14): the noun maps are built as <see cref="CtcalLoss"/> builds them (<see cref="AttentionMapAggregator"/>: heads
/// averaged, a noun's sub-word tokens averaged, layers resized to one side and averaged), then per noun
/// <list type="bullet">
/// <item><c>KL(teacher || student)</c> of the maps scaled to sum 1 over their pixels (spatial distributions; 0 when they
/// agree; it does not depend on how much probability mass the token receives, nor on the CTCal loss weights);</item>
/// <item>the cosine similarity of the flattened raw maps (1 when they agree up to scale);</item>
/// <item>the student map's normalised spatial entropy (1: uniform, content-free), since maps that lost their content agree
/// trivially.</item>
/// </list>
/// Computed without gradient from detached maps; draws nothing.
/// </summary>
public static class AlignmentMeasure
{
    private const double Epsilon = 1e-8;

    /// <summary>
    /// Sums over the nouns of <paramref name="nouns"/> (row b = sample b of both map sets, each [B, heads, H*W, tokens]
    /// per layer). <paramref name="resolution"/>: the common side (null: the largest layer's, as <see cref="CtcalLossOptions.MapResolution"/>).
    /// </summary>
    public static AlignmentSums Compute(IReadOnlyDictionary<string, Tensor> teacherMaps, IReadOnlyDictionary<string, Tensor> studentMaps,
        NounTokens nouns, IReadOnlyList<string> layers, int? resolution)
    {
        if (nouns.TotalNouns == 0) return default;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var first = studentMaps.TryGetValue(layers[0], out var m0) ? m0
            : throw new KeyNotFoundException($"student attention maps of layer '{layers[0]}' were not captured");
        long batch = first.shape[0];
        if (nouns.BatchSize != batch) throw new ArgumentException($"noun tokens describe {nouns.BatchSize} samples but the maps have {batch}");
        var weights = nouns.ToWeights((int)first.shape[3], first.device);
        var valid = nouns.ToMask(first.device).flatten().nonzero().squeeze(1);
        Tensor Noun(IReadOnlyDictionary<string, Tensor> maps)
        {
            var detached = maps.ToDictionary(kv => kv.Key, kv => kv.Value.detach());
            var aggregated = AttentionMapAggregator.Aggregate(detached, layers, weights, resolution).to(ScalarType.Float64); // [B, K, R, R]
            return aggregated.flatten(2).flatten(0, 1).index_select(0, valid);                                               // [N, R*R]
        }
        var teacher = Noun(teacherMaps);
        var student = Noun(studentMaps);
        var p = teacher / (teacher.sum(new long[] { 1 }, keepdim: true) + Epsilon);
        var q = student / (student.sum(new long[] { 1 }, keepdim: true) + Epsilon);
        var kl = CtcalLoss.Kl(p, q);
        var cosine = nn.functional.cosine_similarity(teacher, student, dim: 1, eps: Epsilon);
        var entropy = -(q * (q + Epsilon).log()).sum(new long[] { 1 }) / Math.Log(q.shape[1]);
        return new AlignmentSums(kl.sum().item<double>(), cosine.sum().item<double>(), (int)valid.shape[0], entropy.sum().item<double>());
    }
}

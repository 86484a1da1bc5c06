using TorchSharp;
using static TorchSharp.torch;
using CTCal.Core.Text;

namespace CTCal.Trainer.Calibration;

/// <summary>The CTCal term of one batch and its parts (the parts are unweighted means over all nouns, for logging).</summary>
/// <param name="Total">
/// The scalar to add to the diffusion loss: mean over the batch's samples of (t_stu/T) * L_ctcal(sample); a sample with no
/// noun adds 0 (it still counts in the batch mean). Carries the gradient (to the student maps and the autoencoder).
/// </param>
/// <param name="Pixel">Mean over nouns of D(A_stu, A_tea).</param>
/// <param name="Semantic">Mean over nouns of D(f_enc(A_stu), f_enc(A_tea)).</param>
/// <param name="Reconstruction">Mean over nouns of D(f_dec(f_enc(A_tea)), A_tea): trains the autoencoder only (A_tea is detached).</param>
/// <param name="Balance">Mean over nouns of ReLU(S_attn - max(A_stu,y) - tau).</param>
/// <param name="Nouns">Nouns calibrated in this batch.</param>
public sealed record CtcalLossParts(Tensor Total, double Pixel, double Semantic, double Reconstruction, double Balance, int Nouns)
{
    /// <summary>
    /// The part of <see cref="Total"/> that aligns the student (pixel + semantic + balance, weighted and time-weighted as in
    /// Total; Total = AlignmentTerm + ReconstructionTerm up to rounding). For the per-term gradient norms; null when no noun.
    /// </summary>
    public Tensor? AlignmentTerm { get; init; }

    /// <summary>The reconstruction part of <see cref="Total"/> (it reaches only the autoencoder); null when no noun.</summary>
    public Tensor? ReconstructionTerm { get; init; }
}

/// <summary>
/// The CTCal loss (Cross-Timestep Self-Calibration), as a pure function of captured cross-attention maps:
/// <code>
/// L_ctcal(sample) = 1/N_noun * sum_y [ l1 D(Â_stu,y, Â_tea,y) + l2 D(f_enc(Â_stu,y), f_enc(Â_tea,y))
///                                     + l3 D(f_dec(f_enc(Â_tea,y)), Â_tea,y) + l4 ReLU(S_attn - max A_stu,y - tau) ]
/// Total = mean over samples of (t_stu / T) * L_ctcal(sample)
/// </code>
/// Maps: each layer's probabilities [B, heads, H*W, tokens] are averaged over heads, the noun's sub-word tokens are
/// averaged, every layer is resized to one resolution R (bilinear up, area down) and the layers are averaged (A, values
/// still attention probabilities).
/// <para>Normalisation: the distance and autoencoder terms see Â = A / mean_pixels(A), each noun map scaled to mean 1
/// over its R x R pixels (a spatial distribution times R², so the loss scale does not depend on R or on how much
/// probability mass the token receives). KL reads Â / R² as a distribution and computes KL(teacher || student).
/// Subject balancing uses the raw probabilities A, whose peaks are comparable across nouns; S_attn is the largest noun peak of
/// the sample, detached, so balancing lifts weak subjects rather than pulling the strongest one down.</para>
/// <para>When the student maps equal the teacher maps the pixel and semantic terms are exactly zero; the reconstruction term
/// is not (it measures the autoencoder, not the student) and balancing is zero only for balanced subjects.</para>
/// Teacher maps are detached here whatever the caller passed, so no gradient reaches them.
/// </summary>
public sealed class CtcalLoss
{
    private const double Epsilon = 1e-8;
    private readonly CtcalLossOptions _options;
    private readonly IReadOnlyList<string> _layers;

    /// <param name="options">Weights, distance, tau, resolution, T.</param>
    /// <param name="autoencoder">The attention-map autoencoder (owned by the caller, trained with the same optimizer).</param>
    /// <param name="layers">Module paths of the attn2 layers whose maps are calibrated.</param>
    public CtcalLoss(CtcalLossOptions options, AttentionMapAutoencoder autoencoder, IReadOnlyList<string> layers)
    {
        if (layers.Count == 0) throw new ArgumentException("CTCal needs at least one attention layer", nameof(layers));
        _options = options;
        Autoencoder = autoencoder;
        _layers = layers.ToArray();
    }

    public AttentionMapAutoencoder Autoencoder { get; }

    public IReadOnlyList<string> Layers => _layers;

    public CtcalLossOptions Options => _options;

    /// <summary>Scales each map [.., R, R] to mean 1 over its pixels.</summary>
    public static Tensor Normalise(Tensor maps) => maps / (maps.mean(new long[] { -2, -1 }, keepdim: true) + Epsilon);

    /// <summary>KL(p || q) of the rows of [N, P] tensors read as distributions over P pixels -> [N].</summary>
    public static Tensor Kl(Tensor p, Tensor q) => (p * ((p + Epsilon).log() - (q + Epsilon).log())).sum(new long[] { 1 });

    /// <summary>Per-map distance of [N, C, h, w] tensors -> [N].</summary>
    public static Tensor Distance(Tensor student, Tensor teacher, MapDistance distance, bool mapsAreNormalised)
    {
        switch (distance)
        {
            case MapDistance.L1:
                return (student - teacher).abs().flatten(1).mean(new long[] { 1 });
            case MapDistance.Kl when mapsAreNormalised:
                long pixels = student.shape[^1] * student.shape[^2];
                return Kl((teacher / pixels).flatten(1), (student / pixels).flatten(1));
            default:
                return (student - teacher).square().flatten(1).mean(new long[] { 1 });
        }
    }

    /// <summary>
    /// Computes the CTCal term for one batch. <paramref name="teacherMaps"/> and <paramref name="studentMaps"/> hold
    /// [B, heads, H*W, tokens] maps keyed by module path (at least the configured layers); <paramref name="studentTimesteps"/>
    /// is [B]. Tensors created here belong to the caller's dispose scope.
    /// </summary>
    public CtcalLossParts Compute(IReadOnlyDictionary<string, Tensor> teacherMaps, IReadOnlyDictionary<string, Tensor> studentMaps,
        NounTokens nouns, Tensor studentTimesteps)
    {
        var first = studentMaps.TryGetValue(_layers[0], out var m0) ? m0
            : throw new KeyNotFoundException($"student attention maps of layer '{_layers[0]}' were not captured");
        long batch = first.shape[0];
        if (nouns.BatchSize != batch) throw new ArgumentException($"noun tokens describe {nouns.BatchSize} samples but the maps have {batch}");
        if (studentTimesteps.numel() != batch) throw new ArgumentException($"{studentTimesteps.numel()} student timesteps for a batch of {batch}");
        if (nouns.TotalNouns == 0)
            return new CtcalLossParts(zeros(Array.Empty<long>(), device: first.device), 0, 0, 0, 0, 0);

        int tokenCount = (int)first.shape[3];
        var weights = nouns.ToWeights(tokenCount, first.device);                    // [B, K, tokens]
        var mask = nouns.ToMask(first.device);                                      // [B, K]
        long k = weights.shape[1];

        Tensor teacher;
        using (no_grad())
        {
            var detached = teacherMaps.ToDictionary(kv => kv.Key, kv => kv.Value.detach());
            teacher = AttentionMapAggregator.Aggregate(detached, _layers, weights, _options.MapResolution).detach();
        }
        var student = AttentionMapAggregator.Aggregate(studentMaps, _layers, weights, _options.MapResolution); // [B, K, R, R]
        long r = student.shape[^1];

        // Keep the (sample, noun) pairs that exist: N rows.
        var valid = mask.flatten().nonzero().squeeze(1);                            // [N]
        var sampleOfNoun = valid.div(k, rounding_mode: RoundingMode.floor);         // [N]
        var rawStudent = student.reshape(batch * k, 1, r, r).index_select(0, valid); // [N, 1, R, R]
        var rawTeacher = teacher.reshape(batch * k, 1, r, r).index_select(0, valid);
        var normStudent = Normalise(rawStudent);
        var normTeacher = Normalise(rawTeacher);

        var pixel = Distance(normStudent, normTeacher, _options.Distance, mapsAreNormalised: true);           // [N]
        var codes = Autoencoder.Encode(cat([normStudent, normTeacher], 0));            // one pass for both: [2N, code, r/4, r/4]
        var codesStudent = codes.narrow(0, 0, normStudent.shape[0]);
        var codesTeacher = codes.narrow(0, normStudent.shape[0], normTeacher.shape[0]);
        var featureDistance = _options.Distance == MapDistance.L1 ? MapDistance.L1 : MapDistance.Mse;
        var semantic = Distance(codesStudent, codesTeacher, featureDistance, mapsAreNormalised: false);       // [N]
        var reconstruction = Distance(Autoencoder.Decode(codesTeacher, (int)r), normTeacher, featureDistance, mapsAreNormalised: false);

        // Subject balancing on raw probabilities: S_attn = the sample's strongest noun peak (detached).
        var peaks = student.flatten(2).amax(new long[] { 2 });                      // [B, K]
        var strongest = peaks.detach().masked_fill(mask.eq(0), double.NegativeInfinity).amax(new long[] { 1 }); // [B]
        var peakOfNoun = peaks.flatten().index_select(0, valid);                    // [N]
        var balance = nn.functional.relu(strongest.index_select(0, sampleOfNoun) - peakOfNoun - _options.Tau);

        var perNoun = _options.PixelWeight * pixel + _options.SemanticWeight * semantic
                      + _options.ReconstructionWeight * reconstruction + _options.BalanceWeight * balance;

        // Per noun coefficient: (t_stu/T) of its sample / (its sample's noun count * B).
        var nounCounts = mask.sum(new long[] { 1 });                                // [B]
        var timeWeight = _options.ConstantTimeWeight
            ? ones(batch, ScalarType.Float32, first.device)                          // [B] the constant-weighting ablation
            : studentTimesteps.to(ScalarType.Float32).to(first.device).flatten() / _options.NumTrainTimesteps;
        var coefficient = (timeWeight / nounCounts.clamp_min(1) / batch).index_select(0, sampleOfNoun);
        var total = (coefficient * perNoun).sum();
        var reconstructionTerm = (coefficient * (_options.ReconstructionWeight * reconstruction)).sum();
        var alignmentTerm = (coefficient * (_options.PixelWeight * pixel + _options.SemanticWeight * semantic + _options.BalanceWeight * balance)).sum();

        return new CtcalLossParts(total,
            pixel.mean().item<float>(), semantic.mean().item<float>(), reconstruction.mean().item<float>(), balance.mean().item<float>(),
            nouns.TotalNouns)
        { AlignmentTerm = alignmentTerm, ReconstructionTerm = reconstructionTerm };
    }
}

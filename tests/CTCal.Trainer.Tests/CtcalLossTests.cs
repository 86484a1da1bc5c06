using CTCal.Trainer.Calibration;
using CTCal.Trainer.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

public sealed class CtcalLossTests
{
    private static readonly string[] Layers = ["down.attn2", "mid.attn2"];

    /// <summary>Random softmax maps for two layers: 8x8 and 4x4 pixels, 2 heads, 6 tokens.</summary>
    private static Dictionary<string, Tensor> RandomMaps(long batch, int seed, bool requiresGrad)
    {
        var g = new Generator((ulong)seed);
        var maps = new Dictionary<string, Tensor>
        {
            [Layers[0]] = randn(new long[] { batch, 2, 64, 6 }, generator: g).mul(3).softmax(-1),
            [Layers[1]] = randn(new long[] { batch, 2, 16, 6 }, generator: g).mul(3).softmax(-1),
        };
        if (requiresGrad) foreach (var m in maps.Values) m.requires_grad_(true);
        return maps;
    }

    private static CtcalLoss NewLoss(CtcalLossOptions? options = null)
    {
        var autoencoder = new AttentionMapAutoencoder();
        using (var generator = new Generator(7)) DeterministicInit.Reset(autoencoder, generator);
        return new CtcalLoss(options ?? new CtcalLossOptions(), autoencoder, Layers);
    }

    private static NounTokens Nouns(params int[][][] perSample) => new(perSample.Select(s => (IReadOnlyList<int[]>)s));

    [Theory]
    [InlineData(MapDistance.Mse)]
    [InlineData(MapDistance.L1)]
    [InlineData(MapDistance.Kl)]
    public void DistanceTermsAreZeroWhenStudentEqualsTeacher(MapDistance distance)
    {
        using var scope = NewDisposeScope();
        var loss = NewLoss(new CtcalLossOptions { Distance = distance });
        var maps = RandomMaps(2, 1, requiresGrad: false);
        var parts = loss.Compute(maps, maps, Nouns([[1], [3, 4]], [[2]]), tensor(new long[] { 500, 900 }));

        Assert.Equal(0.0, parts.Pixel, 9);
        Assert.Equal(0.0, parts.Semantic, 9);
        Assert.True(parts.Reconstruction > 0, "the reconstruction term measures the autoencoder and is separate");
        Assert.Equal(3, parts.Nouns);

        var other = RandomMaps(2, 2, requiresGrad: false);
        var differing = loss.Compute(maps, other, Nouns([[1], [3, 4]], [[2]]), tensor(new long[] { 500, 900 }));
        Assert.True(differing.Pixel > 1e-4);
        Assert.True(differing.Semantic > 0);
    }

    [Fact]
    public void NoGradientReachesTheTeacherMaps()
    {
        using var scope = NewDisposeScope();
        var loss = NewLoss();
        var teacher = RandomMaps(2, 3, requiresGrad: true);
        var student = RandomMaps(2, 4, requiresGrad: true);
        var parts = loss.Compute(teacher, student, Nouns([[1]], [[2], [5]]), tensor(new long[] { 700, 300 }));
        parts.Total.backward();

        foreach (var t in teacher.Values) Assert.True(t.grad is null || t.grad.abs().sum().item<float>() == 0f);
        foreach (var s in student.Values) Assert.True(s.grad!.abs().sum().item<float>() > 0f);
        Assert.Contains(loss.Autoencoder.parameters(), p => p.grad is not null && p.grad.abs().sum().item<float>() > 0f);
    }

    [Fact]
    public void TotalScalesLinearlyWithStudentTimestep()
    {
        using var scope = NewDisposeScope();
        var loss = NewLoss();
        var teacher = RandomMaps(1, 5, requiresGrad: false);
        var student = RandomMaps(1, 6, requiresGrad: false);
        var nouns = Nouns([[1], [2]]);
        double at250 = loss.Compute(teacher, student, nouns, tensor(new long[] { 250 })).Total.item<float>();
        double at500 = loss.Compute(teacher, student, nouns, tensor(new long[] { 500 })).Total.item<float>();
        double at1000 = loss.Compute(teacher, student, nouns, tensor(new long[] { 1000 })).Total.item<float>();
        double at0 = loss.Compute(teacher, student, nouns, tensor(new long[] { 0 })).Total.item<float>();

        Assert.True(at250 > 0);
        Assert.Equal(2 * at250, at500, 5);
        Assert.Equal(4 * at250, at1000, 5);
        Assert.Equal(0, at0, 9);
    }

    [Fact]
    public void ConstantWeightingAblationWeighsEveryTimestepAsOne()
    {
        using var scope = NewDisposeScope();
        var linear = NewLoss();
        var constant = NewLoss(new CtcalLossOptions { ConstantTimeWeight = true });
        var teacher = RandomMaps(1, 5, requiresGrad: false);
        var student = RandomMaps(1, 6, requiresGrad: false);
        var nouns = Nouns([[1], [2]]);
        double linearAt1000 = linear.Compute(teacher, student, nouns, tensor(new long[] { 1000 })).Total.item<float>();
        double at250 = constant.Compute(teacher, student, nouns, tensor(new long[] { 250 })).Total.item<float>();
        double at0 = constant.Compute(teacher, student, nouns, tensor(new long[] { 0 })).Total.item<float>();

        Assert.True(at250 > 0);
        Assert.Equal(at250, at0, 6);
        Assert.Equal(linearAt1000, at250, 5); // t/T = 1 at t = T: the same as the constant weight
    }

    /// <summary>One layer, 4x4 pixels, 4 tokens; nouns at tokens 1 and 2 with peaks p1 and p2 (everything else on token 0).</summary>
    private static Dictionary<string, Tensor> PeakMaps(float p1, float p2)
    {
        var data = new float[16 * 4];
        for (int px = 0; px < 16; px++) data[px * 4] = 1f;
        data[3 * 4 + 0] = 1f - p1; data[3 * 4 + 1] = p1;
        data[12 * 4 + 0] = 1f - p2; data[12 * 4 + 2] = p2;
        var map = tensor(data, new long[] { 1, 1, 16, 4 });
        return new Dictionary<string, Tensor> { ["only.attn2"] = map };
    }

    [Fact]
    public void BalancingIsZeroForBalancedSubjectsAndPositiveWhenOneDominates()
    {
        using var scope = NewDisposeScope();
        var options = new CtcalLossOptions { Tau = 0.05 };
        var loss = new CtcalLoss(options, new AttentionMapAutoencoder(), ["only.attn2"]);
        var nouns = Nouns([[1], [2]]);

        var balanced = PeakMaps(0.6f, 0.58f);
        Assert.Equal(0.0, loss.Compute(balanced, balanced, nouns, tensor(new long[] { 999 })).Balance, 9);

        var dominated = PeakMaps(0.6f, 0.1f);
        var parts = loss.Compute(dominated, dominated, nouns, tensor(new long[] { 999 }));
        // noun 2: ReLU(0.6 - 0.1 - 0.05) = 0.45; noun 1: 0; mean over nouns 0.225.
        Assert.Equal(0.225, parts.Balance, 5);
    }

    /// <summary>One layer, 4x4 pixels, 4 tokens: noun token 1 gets <paramref name="corner"/> on pixels 0..3 and <paramref name="rest"/> elsewhere.</summary>
    private static Dictionary<string, Tensor> NounMaps(float corner, float rest)
    {
        var data = new float[16 * 4];
        for (int px = 0; px < 16; px++)
        {
            float p = px < 4 ? corner : rest;
            data[px * 4 + 1] = p;
            data[px * 4] = 1f - p;
        }
        return new Dictionary<string, Tensor> { ["only.attn2"] = tensor(data, new long[] { 1, 1, 16, 4 }) };
    }

    [Fact]
    public void KlDistanceIsKlOfTeacherGivenStudent()
    {
        using var scope = NewDisposeScope();
        var loss = new CtcalLoss(new CtcalLossOptions { Distance = MapDistance.Kl }, new AttentionMapAutoencoder(), ["only.attn2"]);
        var nouns = Nouns([[1]]);
        // Teacher: 0.3 on 4 pixels, 0.1 on 12 (sum 2.4), as a distribution p = 1/8 on 4 pixels and 1/24 on 12.
        // Student: 0.2 everywhere, q = 1/16 on all 16 pixels.
        var teacher = NounMaps(0.3f, 0.1f);
        var student = NounMaps(0.2f, 0.2f);
        // KL(p || q) = 4/8 ln((1/8)/(1/16)) + 12/24 ln((1/24)/(1/16)) = 0.5 ln 2 + 0.5 ln(2/3) = 0.5 ln(4/3) = 0.1438410
        // KL(q || p) = 4/16 ln((1/16)/(1/8)) + 12/16 ln((1/16)/(1/24)) = 0.25 ln 0.5 + 0.75 ln 1.5 = 0.1308120
        double teacherGivenStudent = loss.Compute(teacher, student, nouns, tensor(new long[] { 999 })).Pixel;
        Assert.Equal(0.5 * Math.Log(4.0 / 3.0), teacherGivenStudent, 5);
        Assert.Equal(0.1438410, teacherGivenStudent, 5);
        double swapped = loss.Compute(student, teacher, nouns, tensor(new long[] { 999 })).Pixel;
        Assert.Equal(0.25 * Math.Log(0.5) + 0.75 * Math.Log(1.5), swapped, 5);
    }

    [Fact]
    public void SamplesWithoutNounsContributeNothing()
    {
        using var scope = NewDisposeScope();
        var loss = NewLoss();
        var teacher = RandomMaps(2, 8, requiresGrad: false);
        var studentA = RandomMaps(2, 9, requiresGrad: false);
        var studentB = RandomMaps(2, 9, requiresGrad: false);
        // Change only sample 1 (which has no noun) in the second student.
        foreach (var key in Layers) studentB[key] = cat([studentA[key][..1], RandomMaps(1, 10, false)[key]], 0);
        var nouns = Nouns([[1], [3]], []);
        var t = tensor(new long[] { 600, 600 });

        var a = loss.Compute(teacher, studentA, nouns, t);
        var b = loss.Compute(teacher, studentB, nouns, t);
        Assert.Equal(a.Total.item<float>(), b.Total.item<float>());
        Assert.Equal(2, a.Nouns);

        var none = loss.Compute(teacher, studentA, Nouns([], []), t);
        Assert.Equal(0f, none.Total.item<float>());
        Assert.Equal(0, none.Nouns);
    }

    [Fact]
    public void AggregatorAveragesHeadsAndTokensAndResizesToTheLargestLayer()
    {
        using var scope = NewDisposeScope();
        var maps = RandomMaps(1, 11, requiresGrad: false);
        var weights = Nouns([[1, 2]]).ToWeights(6);
        var aggregated = AttentionMapAggregator.Aggregate(maps, Layers, weights);
        Assert.Equal(new long[] { 1, 1, 8, 8 }, aggregated.shape);

        var only8 = AttentionMapAggregator.Aggregate(maps, [Layers[0]], weights);
        var expected = maps[Layers[0]].mean(new long[] { 1 })[0].index_select(1, tensor(new long[] { 1, 2 })).mean(new long[] { 1 }).reshape(8, 8);
        Assert.True(allclose(only8[0, 0], expected, rtol: 1e-5, atol: 1e-6));

        var missing = Assert.Throws<KeyNotFoundException>(() => AttentionMapAggregator.Aggregate(maps, ["up.attn2"], weights));
        Assert.Contains("up.attn2", missing.Message);
    }

    [Fact]
    public void NormalisedMapsHaveMeanOne()
    {
        using var scope = NewDisposeScope();
        var maps = rand(3, 2, 8, 8);
        var n = CtcalLoss.Normalise(maps);
        Assert.True(allclose(n.mean(new long[] { -2, -1 }), ones(3, 2), atol: 1e-5));
    }

    // ---- Term weights, computed by hand on 4x4 maps of one layer and one head (tokens: 0 = start, 1 and 2 = nouns) ----

    private const string HandLayer = "hand.attn2";

    /// <summary>Equal within 2e-6 relative (float32 arithmetic in the loss against double arithmetic here).</summary>
    private static void Close(double expected, double actual) =>
        Assert.True(Math.Abs(expected - actual) <= 2e-6 * Math.Max(1, Math.Abs(expected)), $"expected {expected}, got {actual}");

    /// <summary>A token's map: <paramref name="peak"/> at pixel <paramref name="at"/>, <paramref name="rest"/> elsewhere (16 pixels).</summary>
    private static float[] Column(int at, float peak, float rest) => Enumerable.Range(0, 16).Select(i => i == at ? peak : rest).ToArray();

    /// <summary>[B, 1, 16, 3] maps whose token 1 and 2 columns are the given ones (token 0 takes the rest of the mass).</summary>
    private static Tensor HandMaps(params (float[] Noun1, float[] Noun2)[] samples)
    {
        var data = new float[samples.Length * 16 * 3];
        for (int b = 0; b < samples.Length; b++)
            for (int i = 0; i < 16; i++)
            {
                int o = (b * 16 + i) * 3;
                data[o + 1] = samples[b].Noun1[i];
                data[o + 2] = samples[b].Noun2[i];
                data[o] = 1 - data[o + 1] - data[o + 2];
            }
        return tensor(data, new long[] { samples.Length, 1, 16, 3 });
    }

    /// <summary>Mean over pixels of the squared difference of the two maps, each scaled to mean 1 (the MSE pixel term).</summary>
    private static double HandPixelMse(float[] student, float[] teacher)
    {
        double ms = student.Average(v => (double)v), mt = teacher.Average(v => (double)v);
        return student.Zip(teacher, (s, t) => Math.Pow(s / ms - t / mt, 2)).Average();
    }

    private static readonly float[] StudentA = Column(0, 0.5f, 0.1f), StudentB = Column(5, 0.2f, 0.05f);
    private static readonly float[] TeacherA = Column(0, 0.6f, 0.05f), TeacherB = Column(10, 0.3f, 0.02f);

    /// <summary>
    /// Pixel and balance terms with the semantic and reconstruction weights at 0, by hand: sample 0 has nouns A and B at
    /// t = 800, sample 1 only A at t = 200 (same maps). Each noun's term is weighted by (t/T) / (its sample's nouns x batch):
    /// 0.8/4 for sample 0's nouns, 0.2/2 for sample 1's. B's peak (0.2) is 0.3 below A's (0.5): balance relu(0.3 - tau).
    /// </summary>
    [Fact]
    public void PixelAndBalanceTermsMatchAHandComputation()
    {
        using var scope = NewDisposeScope();
        var options = new CtcalLossOptions { PixelWeight = 0.7, SemanticWeight = 0, ReconstructionWeight = 0, BalanceWeight = 0.3, Tau = 0.05 };
        var loss = new CtcalLoss(options, new AttentionMapAutoencoder(), [HandLayer]);
        var student = new Dictionary<string, Tensor> { [HandLayer] = HandMaps((StudentA, StudentB), (StudentA, StudentB)) };
        var teacher = new Dictionary<string, Tensor> { [HandLayer] = HandMaps((TeacherA, TeacherB), (TeacherA, TeacherB)) };
        var parts = loss.Compute(teacher, student, Nouns([[1], [2]], [[1]]), tensor(new long[] { 800, 200 }));

        double pixelA = HandPixelMse(StudentA, TeacherA), pixelB = HandPixelMse(StudentB, TeacherB);
        double balanceB = Math.Max(0, 0.5 - 0.2 - 0.05);
        double expected = 0.8 / (2 * 2) * (0.7 * pixelA + 0.7 * pixelB + 0.3 * balanceB)
                          + 0.2 / (1 * 2) * (0.7 * pixelA);
        Close(expected, parts.Total.item<float>());
        Close((pixelA + pixelB + pixelA) / 3, parts.Pixel); // reported: the mean over the 3 (sample, noun) pairs
        Close(balanceB / 3, parts.Balance);
        Assert.Equal(3, parts.Nouns);
    }

    /// <summary>
    /// Each weight scales its own term and nothing else: with one sample and one noun (coefficient t/T = 0.6), the total with
    /// only lambda_i set is lambda_i x 0.6 x the reported term i, and with all four set it is the sum of those.
    /// </summary>
    [Fact]
    public void EachWeightScalesItsOwnTerm()
    {
        using var scope = NewDisposeScope();
        var student = new Dictionary<string, Tensor> { [HandLayer] = HandMaps((StudentA, StudentB)) };
        var teacher = new Dictionary<string, Tensor> { [HandLayer] = HandMaps((TeacherA, TeacherB)) };
        var t = tensor(new long[] { 600 });
        var nouns = Nouns([[2]]);
        var autoencoder = new AttentionMapAutoencoder();
        using (var generator = new Generator(3)) DeterministicInit.Reset(autoencoder, generator);
        double Total(CtcalLossOptions o, out CtcalLossParts parts)
        {
            parts = new CtcalLoss(o, autoencoder, [HandLayer]).Compute(teacher, student, nouns, t);
            return parts.Total.item<float>();
        }
        var none = new CtcalLossOptions { PixelWeight = 0, SemanticWeight = 0, ReconstructionWeight = 0, BalanceWeight = 0, Tau = 0 };
        double pixel = Total(none with { PixelWeight = 2 }, out var p);
        double semantic = Total(none with { SemanticWeight = 3 }, out _);
        double reconstruction = Total(none with { ReconstructionWeight = 5 }, out _);
        double balance = Total(none with { BalanceWeight = 7 }, out _);
        double all = Total(none with { PixelWeight = 2, SemanticWeight = 3, ReconstructionWeight = 5, BalanceWeight = 7 }, out _);

        Close(2 * 0.6 * HandPixelMse(StudentB, TeacherB), pixel);
        Close(2 * 0.6 * p.Pixel, pixel);
        Close(3 * 0.6 * p.Semantic, semantic);
        Close(5 * 0.6 * p.Reconstruction, reconstruction);
        Assert.Equal(0, balance, 6); // one noun: it is its own strongest peak
        Close(pixel + semantic + reconstruction + balance, all);
        Assert.True(p.Semantic > 1e-4 && p.Reconstruction > 1e-4 && Math.Abs(p.Semantic - p.Reconstruction) > 1e-4,
            $"semantic {p.Semantic} and reconstruction {p.Reconstruction} must differ for the check to tell them apart");
    }
}

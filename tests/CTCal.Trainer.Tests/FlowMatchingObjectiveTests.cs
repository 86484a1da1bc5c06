using CTCal.Core.Schedulers;
using CTCal.Trainer.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>
/// The SD3 flow-matching objective (<see cref="FlowMatchingObjective"/>) against the formulas of diffusers' SD3 training
/// script: the timestep densities and their lookup into the descending tables, x_t, the target, the loss weights and the
/// weighted loss; and the determinism that exact resume relies on.
/// </summary>
public sealed class FlowMatchingObjectiveTests(ITestOutputHelper output)
{
    private static float[] Floats(Tensor t) => t.to(ScalarType.Float32).cpu().data<float>().ToArray();

    private static long[] Longs(Tensor t) => t.cpu().data<long>().ToArray();

    private static double Median(float[] values)
    {
        var sorted = values.Order().ToArray();
        return (sorted[(sorted.Length - 1) / 2] + (double)sorted[sorted.Length / 2]) / 2;
    }

    [Theory]
    [InlineData(0.0, 1.0)]
    [InlineData(0.8, 1.0)]
    [InlineData(-1.0, 3.0)]
    [InlineData(0.5, 3.0)]
    public void LogitNormalMedianSigmaIsOneMinusSigmoidOfTheMeanShifted(double mean, double shift)
    {
        // The script indexes the descending tables with floor(u N), so the unshifted sigma is about 1 - u = sigmoid(-n):
        // the median sigma is shift m / (1 + (shift - 1) m) for m = 1 - sigmoid(mean), not sigmoid(mean) itself.
        using var scope = NewDisposeScope();
        var objective = new FlowMatchingObjective(new FlowMatchingOptions { WeightingScheme = "logit_normal", LogitMean = mean, Shift = shift });
        using var generator = new Generator(1234);
        var draw = objective.SampleTimesteps(40000, CPU, generator);
        double m = 1 - 1 / (1 + Math.Exp(-mean)), expected = shift * m / (1 + (shift - 1) * m);
        double median = Median(Floats(draw.Sigmas));
        output.WriteLine($"mean {mean}, shift {shift}: median sigma {median:F4}, expected {expected:F4}");
        Assert.InRange(median, expected - 0.01, expected + 0.01);
        // Timesteps are the same table entries times N.
        float[] sigmas = Floats(draw.Sigmas), timesteps = Floats(draw.Timesteps);
        long[] indices = Longs(draw.Indices);
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal(objective.TrainingSigmas[(int)indices[i]], sigmas[i]);
            Assert.Equal(objective.TrainingTimesteps[(int)indices[i]], timesteps[i]);
            Assert.Equal(sigmas[i] * 1000f, timesteps[i]);
        }
    }

    [Fact]
    public void ModeAtScaleZeroIsUniformReflected()
    {
        using var scope = NewDisposeScope();
        using var a = new Generator(77);
        using var b = new Generator(77);
        float[] mode = Floats(FlowMatchingObjective.SampleDensity("mode", 5000, 0, 1, modeScale: 0, a));
        float[] uniform = Floats(FlowMatchingObjective.SampleDensity("uniform", 5000, 0, 1, 1.29, b));
        for (int i = 0; i < mode.Length; i++) Assert.Equal(1f - uniform[i], mode[i]);
        Assert.InRange(uniform.Average(), 0.49, 0.51);
        Assert.All(uniform, u => Assert.InRange(u, 0f, 1f));
    }

    [Fact]
    public void ModeDensityHasTheSecondMomentOfItsFormula()
    {
        // E[u^2] for u = f(v), v ~ U[0, 1), by the midpoint rule; scale 1.29 moves it well away from uniform's 1/3.
        const double s = 1.29;
        const int n = 200000;
        double quadrature = 0;
        for (int i = 0; i < n; i++)
        {
            double v = (i + 0.5) / n, f = 1 - v - s * (Math.Pow(Math.Cos(Math.PI * v / 2), 2) - 1 + v);
            quadrature += f * f / n;
        }
        Assert.True(Math.Abs(quadrature - 1.0 / 3) > 0.03, $"the check needs a density far from uniform ({quadrature:F4})");

        using var scope = NewDisposeScope();
        using var generator = new Generator(5);
        float[] u = Floats(FlowMatchingObjective.SampleDensity("mode", 40000, 0, 1, s, generator));
        double secondMoment = u.Average(x => (double)x * x);
        output.WriteLine($"mode {s}: E[u^2] sampled {secondMoment:F4}, formula {quadrature:F4}, uniform {1.0 / 3:F4}");
        Assert.InRange(secondMoment, quadrature - 0.008, quadrature + 0.008);
        Assert.InRange(u.Average(x => (double)x), 0.49, 0.51); // the mode density is symmetric about 1/2
    }

    [Fact]
    public void IndicesStayInTheTableEvenWhenUReachesOne()
    {
        using var scope = NewDisposeScope();
        var u = tensor(new[] { 0f, 0.5f, 0.9995f, 0.99999994f, 1f, -1e-7f, 0.0009f, 0.001f });
        Assert.Equal([0L, 500, 999, 999, 999, 0, 0, 1], Longs(FlowMatchingObjective.DensityToIndices(u, 1000)));

        // A wide logit-normal saturates the float32 sigmoid at exactly 1: the draws must still land on the last entry.
        using var generator = new Generator(9);
        var wide = FlowMatchingObjective.SampleDensity("logit_normal", 20000, 0, 50, 1.29, generator);
        Assert.Contains(1f, Floats(wide));
        long[] indices = Longs(FlowMatchingObjective.DensityToIndices(wide, 1000));
        Assert.All(indices, i => Assert.InRange(i, 0L, 999L));
        Assert.Contains(999L, indices);
        Assert.Contains(0L, indices);

        foreach (double scale in new[] { FlowMatchingOptions.MinModeScale, 1.29, FlowMatchingOptions.MaxModeScale })
        {
            var objective = new FlowMatchingObjective(new FlowMatchingOptions { WeightingScheme = "mode", ModeScale = scale });
            var draw = objective.SampleTimesteps(20000, CPU, generator);
            Assert.All(Longs(draw.Indices), i => Assert.InRange(i, 0L, 999L));
            Assert.All(Floats(draw.Sigmas), s => Assert.InRange(s, objective.TrainingSigmas[^1], 1f));
        }
    }

    [Fact]
    public void NoisyInputAndTargetFollowTheStraightPath()
    {
        using var scope = NewDisposeScope();
        var x0 = tensor(new[] { 1f, 2f, 3f, 4f }).reshape(2, 1, 1, 2);
        var noise = tensor(new[] { 10f, 20f, -1f, 0f }).reshape(2, 1, 1, 2);
        var sigmas = tensor(new[] { 0.25f, 1f });
        Assert.Equal([3.25f, 6.5f, -1f, 0f], Floats(FlowMatchingObjective.AddNoise(x0, noise, sigmas)));
        Assert.Equal([9f, 18f, -4f, -4f], Floats(FlowMatchingObjective.Target(x0, noise)));
        Assert.Equal(x0.shape, FlowMatchingObjective.AddNoise(x0, noise, sigmas).shape);
    }

    [Fact]
    public void NoisyInputAtATrainingTimestepIsTheSchedulersScaleNoise()
    {
        // The trainer's x_t and the Core scheduler's add_noise (diffusers' scale_noise) agree on the same table entry.
        using var scope = NewDisposeScope();
        var objective = new FlowMatchingObjective(new FlowMatchingOptions { Shift = 3.0 });
        var scheduler = new FlowMatchEulerDiscreteScheduler(new SchedulerConfig { Shift = 3.0 });
        Assert.Equal(scheduler.Sigmas, objective.TrainingSigmas);
        using var generator = new Generator(3);
        var x0 = randn(new long[] { 1, 4, 2, 2 }, generator: generator);
        var noise = FlowMatchingObjective.SampleNoise(x0, generator);
        foreach (int index in new[] { 0, 137, 999 })
        {
            float[] ours = Floats(FlowMatchingObjective.AddNoise(x0, noise, tensor(new[] { objective.TrainingSigmas[index] })));
            var reference = new float[ours.Length];
            scheduler.AddNoise(Floats(x0), Floats(noise), objective.TrainingTimesteps[index], reference);
            for (int i = 0; i < ours.Length; i++) Assert.Equal(reference[i], ours[i], 6);
        }
    }

    [Theory]
    [InlineData("none", 0.5, 1.0)]
    [InlineData("none", 0.001, 1.0)]
    [InlineData("sigma_sqrt", 1.0, 1.0)]
    [InlineData("sigma_sqrt", 0.5, 4.0)]
    [InlineData("sigma_sqrt", 0.1, 100.0)]
    [InlineData("cosmap", 0.5, 4 / Math.PI)]
    [InlineData("cosmap", 1.0, 2 / Math.PI)]
    [InlineData("cosmap", 0.1, 2 / (Math.PI * 0.82))]
    public void LossWeightsAtKnownSigmas(string weighting, double sigma, double expected)
    {
        using var scope = NewDisposeScope();
        float weight = Floats(FlowMatchingObjective.LossWeights(weighting, tensor(new[] { (float)sigma })))[0];
        Assert.True(Math.Abs(weight - expected) <= 1e-5 * Math.Max(1, expected), $"{weighting} at {sigma}: {weight} vs {expected}");
    }

    [Theory]
    [InlineData("logit_normal", "none")]
    [InlineData("mode", "none")]
    [InlineData("none", "none")]
    [InlineData("sigma_sqrt", "sigma_sqrt")]
    [InlineData("cosmap", "cosmap")]
    public void ObjectiveWeightsFollowTheScheme(string scheme, string weighting)
    {
        using var scope = NewDisposeScope();
        var objective = new FlowMatchingObjective(new FlowMatchingOptions { WeightingScheme = scheme });
        var sigmas = tensor(new[] { 0.3f, 0.9f });
        Assert.Equal(Floats(FlowMatchingObjective.LossWeights(weighting, sigmas)), Floats(objective.Weights(sigmas)));
    }

    [Fact]
    public void WeightedLossIsTheBatchMeanOfWeightTimesPerSampleMse()
    {
        using var scope = NewDisposeScope();
        var prediction = tensor(new[] { 1f, 2f, 0f, 0f }).reshape(2, 1, 1, 2);
        var target = tensor(new[] { 0f, 0f, 3f, 1f }).reshape(2, 1, 1, 2);
        // Per-sample MSE: (1 + 4) / 2 = 2.5 and (9 + 1) / 2 = 5; weights 2 and 0.5: (5 + 2.5) / 2 = 3.75.
        Assert.Equal(3.75f, FlowMatchingObjective.WeightedLoss(prediction, target, tensor(new[] { 2f, 0.5f })).item<float>(), 6);
        // sigma_sqrt at sigmas 0.5 and 1: weights 4 and 1: (10 + 5) / 2.
        var objective = new FlowMatchingObjective(new FlowMatchingOptions { WeightingScheme = "sigma_sqrt" });
        Assert.Equal(7.5f, objective.Loss(prediction, target, tensor(new[] { 0.5f, 1f })).item<float>(), 5);
        // A model that predicts the exact velocity has zero loss at any weighting.
        Assert.Equal(0f, objective.Loss(target, target, tensor(new[] { 0.5f, 1f })).item<float>());
        Assert.Throws<ArgumentException>(() => FlowMatchingObjective.WeightedLoss(prediction, target, tensor(new[] { 1f, 1f, 1f })));
    }

    [Theory]
    [InlineData("logit_normal")]
    [InlineData("mode")]
    [InlineData("cosmap")]
    public void TheSameSeedGivesIdenticalDraws(string scheme)
    {
        using var scope = NewDisposeScope();
        var objective = new FlowMatchingObjective(new FlowMatchingOptions { WeightingScheme = scheme });
        var latents = zeros(4, 4, 8, 8);
        (long[] Indices, float[] Timesteps, float[] Sigmas, float[] Noise)[] Draws(ulong seed)
        {
            using var generator = new Generator(seed);
            return Enumerable.Range(0, 3).Select(_ =>
            {
                var draw = objective.SampleTimesteps(4, CPU, generator);
                return (Longs(draw.Indices), Floats(draw.Timesteps), Floats(draw.Sigmas), Floats(FlowMatchingObjective.SampleNoise(latents, generator)));
            }).ToArray();
        }

        var first = Draws(2024);
        var again = Draws(2024);
        var other = Draws(2025);
        for (int k = 0; k < first.Length; k++)
        {
            Assert.Equal(first[k].Indices, again[k].Indices);
            Assert.Equal(first[k].Timesteps, again[k].Timesteps);
            Assert.Equal(first[k].Sigmas, again[k].Sigmas);
            Assert.Equal(first[k].Noise, again[k].Noise);
        }
        // Successive draws of one generator and draws of another seed differ.
        Assert.NotEqual(first[0].Noise, first[1].Noise);
        Assert.NotEqual(first[0].Noise, other[0].Noise);
        Assert.NotEqual(first.SelectMany(d => d.Sigmas), other.SelectMany(d => d.Sigmas));
    }

    [Fact]
    public void UnknownSamplingOrWeightingIsRefused()
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(1);
        Assert.Throws<ArgumentException>(() => FlowMatchingObjective.SampleDensity("lognorm", 4, 0, 1, 1.29, generator));
        Assert.Throws<ArgumentOutOfRangeException>(() => FlowMatchingObjective.SampleDensity("uniform", 0, 0, 1, 1.29, generator));
        Assert.Throws<ArgumentException>(() => FlowMatchingObjective.LossWeights("snr", tensor(new[] { 0.5f })));
    }
}

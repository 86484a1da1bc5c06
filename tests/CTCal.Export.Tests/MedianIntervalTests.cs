using CTCal.Bench.Inference;

namespace CTCal.Export.Tests;

/// <summary>The bench's distribution-free interval for a median (bench/CTCal.Bench.Inference/MedianInterval.cs, compiled in).</summary>
public sealed class MedianIntervalTests
{
    [Fact]
    public void Twelve_values_give_the_third_and_tenth_order_statistics_at_96_percent()
    {
        // P(Binomial(12, 1/2) <= 2) = 79/4096 = 0.0193 <= 0.025 < P(<= 3) = 299/4096
        var m = MedianInterval.Of([12, 3, 7, 1, 9, 5, 11, 2, 8, 4, 10, 6]);
        Assert.Equal(6.5, m.Median);
        Assert.Equal((3.0, 10.0), (m.Low!.Value, m.High!.Value));
        Assert.Equal(1 - 2 * 79 / 4096.0, m.Coverage, 12);
        Assert.Equal(12, m.Count);
    }

    [Fact]
    public void Too_few_values_have_no_95_percent_interval()
    {
        var five = MedianInterval.Of([1, 2, 3, 4, 5]); // P(B <= 0) = 1/32 > 0.025
        Assert.Equal((3.0, (double?)null, (double?)null), (five.Median, five.Low, five.High));
        Assert.Contains("too few", five.Percent());
        var six = MedianInterval.Of([1, 2, 3, 4, 5, 6]); // 1/64: the extremes, 96.9 %
        Assert.Equal((1.0, 6.0), (six.Low!.Value, six.High!.Value));
        Assert.Throws<ArgumentException>(() => MedianInterval.Of([]));
    }

    [Fact]
    public void Large_samples_keep_a_95_percent_interval_and_bad_levels_are_refused()
    {
        // 2^-n underflows a double from n = 1075; the interval must still be about median +- 1.96 sqrt(n) / 2 ranks
        foreach (int n in new[] { 1074, 1075, 2000 })
        {
            var m = MedianInterval.Of(Enumerable.Range(1, n).Select(i => (double)i).ToList());
            double halfWidth = 1.96 * Math.Sqrt(n) / 2;
            Assert.InRange(m.High!.Value - m.Low!.Value, 2 * halfWidth - 4, 2 * halfWidth + 4);
            Assert.InRange(m.Coverage, 0.95, 0.96);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => MedianInterval.Of([1, 2, 3], double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => MedianInterval.Of([1, 2, 3], 1.0));
    }

    [Theory]
    [InlineData(12)]
    [InlineData(20)]
    public void Covers_the_true_median_of_a_skewed_distribution_as_often_as_it_says(int n)
    {
        // exponential(1): median ln 2; 4000 seeded samples of n values
        var rng = new Random(20261207);
        int covered = 0, trials = 4000;
        double coverage = 0;
        for (int t = 0; t < trials; t++)
        {
            var xs = Enumerable.Range(0, n).Select(_ => -Math.Log(1 - rng.NextDouble())).ToList();
            var m = MedianInterval.Of(xs);
            coverage = m.Coverage;
            if (m.Low <= Math.Log(2) && Math.Log(2) <= m.High) covered++;
        }
        double rate = covered / (double)trials;
        // binomial sd of the rate at 4000 trials is about 0.003; allow 4 sd
        Assert.InRange(rate, coverage - 0.013, coverage + 0.013);
        Assert.True(coverage >= 0.95, $"coverage {coverage}");
    }
}

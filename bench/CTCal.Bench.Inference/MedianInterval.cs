namespace CTCal.Bench.Inference;

/// <summary>
/// The median of a sample with its distribution-free confidence interval: the order statistics x(k) and x(n-k+1) for the
/// largest k with P(Binomial(n, 1/2) &lt;= k - 1) &lt;= (1 - level) / 2 (each sample value falls below the true median with
/// probability 1/2, whatever the distribution). No interval exists for small n (at 95 %, fewer than 6 values).
/// </summary>
public readonly record struct MedianInterval(double Median, double? Low, double? High, double Coverage, int Count)
{
    public static MedianInterval Of(IReadOnlyCollection<double> values, double level = 0.95)
    {
        if (values.Count == 0) throw new ArgumentException("no values", nameof(values));
        if (!(level > 0 && level < 1)) throw new ArgumentOutOfRangeException(nameof(level), level, "level must lie in (0, 1)");
        var s = values.Order().ToArray();
        int n = s.Length;
        double median = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
        // below = P(B <= k - 1) for B ~ Binomial(n, 1/2), the terms P(B = j) = C(n, j) / 2^n kept in log space (2^-n
        // underflows a double from n = 1075)
        double below = 0, logTerm = -n * Math.Log(2);
        int k = 0;
        for (int j = 0; j < n / 2; j++)
        {
            double withJ = below + Math.Exp(logTerm);
            if (withJ > (1 - level) / 2) break;
            below = withJ;
            k = j + 1; // P(B <= k - 1) within the budget: [x(k), x(n-k+1)] (1-based)
            logTerm += Math.Log((n - j) / (j + 1.0));
        }
        if (k == 0) return new MedianInterval(median, null, null, 0, n);
        return new MedianInterval(median, s[k - 1], s[n - k], 1 - 2 * below, n);
    }

    /// <summary>"88.9 % [86.1 %, 91.0 %] (96 % interval, n 12)", or the median with "too few for an interval".</summary>
    public string Percent() => Low is double lo && High is double hi
        ? $"{Median:P1} [{lo:P1}, {hi:P1}] ({Coverage:P0} interval, n {Count})"
        : $"{Median:P1} (n {Count}, too few for an interval)";
}

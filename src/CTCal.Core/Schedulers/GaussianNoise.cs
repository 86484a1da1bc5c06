namespace CTCal.Core.Schedulers;

/// <summary>
/// Deterministic, platform-independent N(0, 1) samples from a seed: xoshiro256** (Blackman and Vigna 2018) seeded through
/// SplitMix64, uniform doubles from the top 53 bits, and Marsaglia's polar method for pairs of normals. Only IEEE basic
/// operations and the correctly rounded square root are used (the logarithm is computed here, not by the C runtime), so
/// a seed gives the same floats on every OS, CPU and .NET version. The stream does not depend on how callers split their
/// requests (an unused second normal of a pair is kept for the next call). Not thread-safe: one instance per consumer.
/// </summary>
public sealed class GaussianNoise : INoiseSource
{
    private ulong _s0, _s1, _s2, _s3;
    private double? _spare;

    public GaussianNoise(long seed)
    {
        ulong x = unchecked((ulong)seed);
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    public void NextGaussian(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (float)NextStandardNormal();
    }

    /// <summary>One N(0, 1) sample in double precision.</summary>
    public double NextStandardNormal()
    {
        if (_spare is { } spare)
        {
            _spare = null;
            return spare;
        }
        while (true)
        {
            double u = 2 * NextUniform() - 1, v = 2 * NextUniform() - 1;
            double s = u * u + v * v;
            if (s >= 1 || s == 0) continue;
            double f = Math.Sqrt(-2 * Ln(s) / s);
            _spare = v * f;
            return u * f;
        }
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextUniform() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    public ulong NextUInt64()
    {
        ulong result = RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));

    private static ulong SplitMix64(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private const double Ln2 = 0.6931471805599453094;

    /// <summary>
    /// Natural log for s in (0, 1) from basic operations only: s = m 2^e with m in [sqrt(1/2), sqrt(2)), then
    /// ln m = 2 atanh(z), z = (m - 1)/(m + 1), |z| &lt; 0.172, summed until the terms vanish (about 1 ulp).
    /// </summary>
    internal static double Ln(double s)
    {
        long bits = BitConverter.DoubleToInt64Bits(s);
        int exponent = (int)((bits >> 52) & 0x7FF) - 1023;
        double m = BitConverter.Int64BitsToDouble((bits & 0x000FFFFFFFFFFFFFL) | 0x3FF0000000000000L); // [1, 2)
        if (exponent == -1023) // subnormal: scale up first
            return Ln(s * 4503599627370496.0) - 52 * Ln2;
        if (m > 1.4142135623730951) { m *= 0.5; exponent++; }
        double z = (m - 1) / (m + 1), z2 = z * z, term = z, sum = 0;
        for (int k = 1; k < 60; k += 2)
        {
            double next = sum + term / k;
            if (next == sum) break;
            sum = next;
            term *= z2;
        }
        return 2 * sum + exponent * Ln2;
    }
}

namespace CTCal.MainJob.Statistics;

/// <summary>
/// How large a study must be: standard errors of pass rates and their difference, the minimum detectable difference
/// and the images per model a difference needs, with the normal approximation to the binomial.
/// </summary>
/// <remarks>
/// The difference of two pass rates p_A, p_B measured on n images each has standard error
/// sqrt((p_A(1 - p_A) + p_B(1 - p_B)) / n) when the images are independent; images of one prompt are not (prompts
/// differ in difficulty), which multiplies the variance by the design effect 1 + (m - 1) rho for m images per prompt
/// and intra-prompt correlation rho (Kish 1965). Pairing (both methods on the same units) can only lower the variance
/// below this, so the independent formula is the conservative planning number; a measured
/// <see cref="PairedBootstrapResult.StandardError"/> can be put in <see cref="MinimumDetectableDifference"/> instead.
/// A difference d is detected by a two-sided test at level alpha with the given power when
/// d >= (z(1 - alpha/2) + z(power)) SE; power 0.5 gives the half-width of the (1 - alpha) interval, z(1 - alpha/2) SE.
/// </remarks>
public static class StudyPower
{
    /// <summary>Standard error of a pass rate <paramref name="p"/> measured on <paramref name="n"/> independent images.</summary>
    public static double StandardError(double p, int n)
    {
        CheckRate(p, nameof(p));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        return Math.Sqrt(p * (1 - p) / n);
    }

    /// <summary>Standard error of p_B - p_A, each on <paramref name="imagesPerModel"/> images, times the design effect.</summary>
    public static double StandardErrorOfDifference(double pA, double pB, int imagesPerModel, double designEffect = 1)
    {
        CheckRate(pA, nameof(pA));
        CheckRate(pB, nameof(pB));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imagesPerModel);
        CheckDesignEffect(designEffect);
        return Math.Sqrt((pA * (1 - pA) + pB * (1 - pB)) * designEffect / imagesPerModel);
    }

    /// <summary>Variance inflation 1 + (m - 1) rho of <paramref name="imagesPerPrompt"/> images per prompt.</summary>
    public static double DesignEffect(int imagesPerPrompt, double intraPromptCorrelation)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imagesPerPrompt);
        if (intraPromptCorrelation is < 0 or > 1 || double.IsNaN(intraPromptCorrelation))
            throw new ArgumentOutOfRangeException(nameof(intraPromptCorrelation), intraPromptCorrelation, "intra-prompt correlation must be in [0, 1]");
        return 1 + (imagesPerPrompt - 1) * intraPromptCorrelation;
    }

    /// <summary>The smallest true difference a two-sided level-<paramref name="alpha"/> test detects with <paramref name="power"/>.</summary>
    public static double MinimumDetectableDifference(double standardError, double alpha = 0.05, double power = 0.8)
    {
        if (!(standardError >= 0) || double.IsInfinity(standardError))
            throw new ArgumentOutOfRangeException(nameof(standardError), standardError, "standard error must be a finite number >= 0");
        return Multiplier(alpha, power) * standardError;
    }

    /// <summary>
    /// Images per model needed to detect a difference from <paramref name="pA"/> to <paramref name="pB"/>
    /// (two-sided, level <paramref name="alpha"/>, <paramref name="power"/>), rounded up.
    /// </summary>
    public static int ImagesPerModel(double pA, double pB, double alpha = 0.05, double power = 0.8, double designEffect = 1)
    {
        CheckRate(pA, nameof(pA));
        CheckRate(pB, nameof(pB));
        CheckDesignEffect(designEffect);
        double d = Math.Abs(pB - pA);
        if (d == 0) throw new ArgumentException("pA and pB are equal: no sample size detects a zero difference");
        double k = Multiplier(alpha, power);
        return (int)Math.Ceiling(k * k * (pA * (1 - pA) + pB * (1 - pB)) * designEffect / (d * d));
    }

    /// <summary>
    /// The standard normal quantile: Wichura's algorithm AS 241 (PPND16, Applied Statistics 37, 1988), accurate to
    /// about 1e-16.
    /// </summary>
    public static double NormalQuantile(double p)
    {
        if (p is <= 0 or >= 1 || double.IsNaN(p)) throw new ArgumentOutOfRangeException(nameof(p), p, "probability must be in (0, 1)");
        double q = p - 0.5;
        if (Math.Abs(q) <= 0.425)
        {
            double r = 0.180625 - q * q;
            return q * (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r
                        + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r + 133.14166789178437745) * r
                        + 3.387132872796366608)
                / (((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r
                        + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r + 42.313330701600911252) * r + 1.0);
        }

        double rr = Math.Sqrt(-Math.Log(q < 0 ? p : 1 - p));
        double x;
        if (rr <= 5)
        {
            rr -= 1.6;
            x = (((((((rr * 7.7454501427834140764e-4 + 0.0227238449892691845833) * rr + 0.24178072517745061177) * rr
                    + 1.27045825245236838258) * rr + 3.64784832476320460504) * rr + 5.7694972214606914055) * rr + 4.6303378461565452959) * rr
                    + 1.42343711074968357734)
                / (((((((rr * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * rr + 0.0151986665636164571966) * rr
                    + 0.14810397642748007459) * rr + 0.68976733498510000455) * rr + 1.6763848301838038494) * rr + 2.05319162663775882187) * rr + 1.0);
        }
        else
        {
            rr -= 5;
            x = (((((((rr * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * rr + 0.0012426609473880784386) * rr
                    + 0.026532189526576123093) * rr + 0.29656057182850489123) * rr + 1.7848265399172913358) * rr + 5.4637849111641143699) * rr
                    + 6.6579046435011037772)
                / (((((((rr * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * rr + 1.8463183175100546818e-5) * rr
                    + 7.868691311456132591e-4) * rr + 0.0148753612908506148525) * rr + 0.13692988092273580531) * rr + 0.59983220655588793769) * rr + 1.0);
        }

        return q < 0 ? -x : x;
    }

    private static double Multiplier(double alpha, double power)
    {
        if (alpha is <= 0 or >= 1 || double.IsNaN(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "alpha must be in (0, 1)");
        if (power is < 0.5 or >= 1 || double.IsNaN(power)) throw new ArgumentOutOfRangeException(nameof(power), power, "power must be in [0.5, 1)");
        return NormalQuantile(1 - alpha / 2) + NormalQuantile(power);
    }

    private static void CheckRate(double p, string name)
    {
        if (p is < 0 or > 1 || double.IsNaN(p)) throw new ArgumentOutOfRangeException(name, p, "a pass rate must be in [0, 1]");
    }

    private static void CheckDesignEffect(double designEffect)
    {
        if (!(designEffect >= 1) || double.IsInfinity(designEffect))
            throw new ArgumentOutOfRangeException(nameof(designEffect), designEffect, "design effect must be a finite number >= 1");
    }
}

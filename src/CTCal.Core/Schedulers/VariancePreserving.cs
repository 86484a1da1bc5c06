namespace CTCal.Core.Schedulers;

/// <summary>Forward-process helpers shared by the alpha-bar indexed schedulers (DDPM, DDIM, PNDM).</summary>
internal static class VariancePreserving
{
    /// <summary>DDPM eq. 4: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.</summary>
    public static void AddNoise(double[] alphasCumprod, ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double timestep, Span<float> destination)
    {
        ScheduleMath.CheckSameLength(original.Length, noise.Length, nameof(noise));
        ScheduleMath.CheckSameLength(original.Length, destination.Length, nameof(destination));
        int t = ScheduleMath.TrainingIndex(timestep, alphasCumprod.Length);
        double a = Math.Sqrt(alphasCumprod[t]), b = Math.Sqrt(1 - alphasCumprod[t]);
        for (int i = 0; i < original.Length; i++) destination[i] = (float)(a * original[i] + b * noise[i]);
    }
}

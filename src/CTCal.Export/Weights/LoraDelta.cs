namespace CTCal.Export.Weights;

/// <summary>
/// One low-rank update of a weight: W' = W + Factor * (B @ A) with A [rank, in...] and B [out, rank(, 1, 1)], where
/// Factor = scale * alpha / rank (alpha = rank when the file stores none). Convolution LoRAs are handled by flattening
/// A to [rank, in*kh*kw].
/// </summary>
public sealed record LoraDelta(string SourceFile, string Module, float[] Down, float[] Up, int Rank, long OutFeatures, long InFeatures, float Factor)
{
    /// <summary>Adds the update to <paramref name="weight"/> (row-major [out, in...], <see cref="OutFeatures"/> x <see cref="InFeatures"/>).</summary>
    public void ApplyTo(Span<float> weight)
    {
        for (long o = 0; o < OutFeatures; o++)
        {
            var row = weight.Slice((int)(o * InFeatures), (int)InFeatures);
            for (int r = 0; r < Rank; r++)
            {
                float b = Up[o * Rank + r] * Factor;
                if (b == 0f) continue;
                var a = Down.AsSpan((int)(r * InFeatures), (int)InFeatures);
                for (int i = 0; i < row.Length; i++) row[i] += b * a[i];
            }
        }
    }
}

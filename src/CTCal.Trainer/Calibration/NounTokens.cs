using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Calibration;

/// <summary>
/// The noun tokens of each sample of a batch: for sample b, a list of nouns, each given by the token positions its word
/// occupies in the text encoder's input (a word may be split into several BPE tokens). A sample with no noun has an empty list.
/// </summary>
public sealed class NounTokens
{
    private readonly IReadOnlyList<int[]>[] _samples;

    public NounTokens(IEnumerable<IReadOnlyList<int[]>> samples)
    {
        _samples = samples.ToArray();
        for (int b = 0; b < _samples.Length; b++)
        {
            foreach (int[] positions in _samples[b])
            {
                if (positions.Length == 0) throw new ArgumentException($"sample {b}: a noun with no token positions");
                foreach (int p in positions)
                    if (p < 0) throw new ArgumentException($"sample {b}: negative token position {p}");
            }
        }
    }

    public int BatchSize => _samples.Length;

    /// <summary>Nouns of sample <paramref name="b"/>.</summary>
    public IReadOnlyList<int[]> this[int b] => _samples[b];

    /// <summary>Largest noun count of any sample (K).</summary>
    public int MaxNouns => _samples.Length == 0 ? 0 : _samples.Max(s => s.Count);

    /// <summary>Total nouns over the batch.</summary>
    public int TotalNouns => _samples.Sum(s => s.Count);

    /// <summary>
    /// Token weights [B, K, tokens]: row (b, k) holds 1/n on the n token positions of noun k of sample b, zeros elsewhere;
    /// rows past a sample's noun count are all zero. Multiplying token maps by it averages a noun's sub-word maps.
    /// </summary>
    public Tensor ToWeights(int tokenCount, Device? device = null)
    {
        int k = Math.Max(1, MaxNouns);
        var data = new float[_samples.Length * k * tokenCount];
        for (int b = 0; b < _samples.Length; b++)
        {
            for (int n = 0; n < _samples[b].Count; n++)
            {
                int[] positions = _samples[b][n];
                foreach (int p in positions)
                {
                    if (p >= tokenCount) throw new ArgumentException($"sample {b}: token position {p} is outside the {tokenCount} tokens of the attention maps");
                    data[(b * k + n) * tokenCount + p] += 1f / positions.Length;
                }
            }
        }
        return tensor(data, new long[] { _samples.Length, k, tokenCount }, device: device);
    }

    /// <summary>Validity mask [B, K] (1 where sample b has a k-th noun).</summary>
    public Tensor ToMask(Device? device = null)
    {
        int k = Math.Max(1, MaxNouns);
        var data = new float[_samples.Length * k];
        for (int b = 0; b < _samples.Length; b++)
            for (int n = 0; n < _samples[b].Count; n++) data[b * k + n] = 1f;
        return tensor(data, new long[] { _samples.Length, k }, device: device);
    }
}

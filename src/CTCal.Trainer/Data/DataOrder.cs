namespace CTCal.Trainer.Data;

/// <summary>
/// The order samples are drawn in: a fresh permutation of the dataset every epoch, made from (seed, epoch) alone, so the
/// whole state is (epoch, position) and a resumed run draws exactly what the uninterrupted run would have.
/// </summary>
public sealed class DataOrder
{
    private readonly int _count;
    private readonly long _seed;
    private int[] _permutation;

    public DataOrder(int count, long seed, int epoch = 0, int position = 0)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), count, "dataset is empty");
        if (position < 0 || position > count) throw new ArgumentOutOfRangeException(nameof(position), position, $"position must be within 0..{count}");
        _count = count;
        _seed = seed;
        Epoch = epoch;
        Position = position;
        _permutation = Permutation(epoch);
    }

    public int Epoch { get; private set; }
    public int Position { get; private set; }

    /// <summary>The next sample index (advancing to a new epoch's permutation at the end of one).</summary>
    public int Next()
    {
        if (Position == _count)
        {
            Epoch++;
            Position = 0;
            _permutation = Permutation(Epoch);
        }
        return _permutation[Position++];
    }

    private int[] Permutation(int epoch)
    {
        // SplitMix64-seeded Fisher-Yates: stable across .NET versions (System.Random's seeded sequence is not guaranteed).
        ulong state = (ulong)_seed * 0x9E3779B97F4A7C15UL ^ (ulong)(epoch + 1) * 0xBF58476D1CE4E5B9UL;
        var order = Enumerable.Range(0, _count).ToArray();
        for (int i = _count - 1; i > 0; i--)
        {
            state = SplitMix(ref state);
            int j = (int)(state % (ulong)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    private static ulong SplitMix(ref ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        ulong z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

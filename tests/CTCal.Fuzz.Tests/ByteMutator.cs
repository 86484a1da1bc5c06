using System.Buffers.Binary;
using CsCheck;

namespace CTCal.Fuzz.Tests;

internal enum ByteMutationKind { BitFlip, SetByte, Truncate, Insert, Delete, Duplicate, OverwriteInt64, OverwriteInt32 }

/// <summary>One structured byte-level mutation; <see cref="Position"/> and <see cref="Arg"/> are reduced modulo the input.</summary>
internal readonly record struct ByteMutation(ByteMutationKind Kind, int Position, int Arg)
{
    public override string ToString() => $"{Kind}@{Position}:{Arg}";
}

/// <summary>Bit flips, truncations, insertions, deletions, duplicated chunks and "interesting" integers written over the data.</summary>
internal static class ByteMutator
{
    /// <summary>Integers that break length and offset arithmetic: zero, -1, sign and width boundaries.</summary>
    public static readonly long[] InterestingIntegers =
    [
        0, 1, -1, 7, 8, 127, 128, 255, 256, 0x7fff, 0x8000, 0xffff, 0x10000, int.MaxValue, int.MinValue, uint.MaxValue,
        (long)uint.MaxValue + 1, 100_000_000, 100_000_001, long.MaxValue, long.MinValue, long.MaxValue - 7, 1L << 40,
    ];

    public static readonly Gen<ByteMutation> Gen =
        CsCheck.Gen.Select(CsCheck.Gen.Enum<ByteMutationKind>(), CsCheck.Gen.Int[0, int.MaxValue], CsCheck.Gen.Int[0, int.MaxValue],
            (k, p, a) => new ByteMutation(k, p, a));

    /// <summary>One to <paramref name="max"/> mutations.</summary>
    public static Gen<ByteMutation[]> Mutations(int max = 4) => Gen.Array[1, max];

    public static byte[] Apply(byte[] input, IEnumerable<ByteMutation> mutations)
    {
        var data = new List<byte>(input);
        foreach (var m in mutations) Apply(data, m);
        return data.ToArray();
    }

    private static void Apply(List<byte> data, ByteMutation m)
    {
        int n = data.Count;
        int pos = n == 0 ? 0 : m.Position % n;
        switch (m.Kind)
        {
            case ByteMutationKind.BitFlip when n > 0:
                data[pos] ^= (byte)(1 << (m.Arg & 7));
                break;
            case ByteMutationKind.SetByte when n > 0:
                data[pos] = (byte)m.Arg;
                break;
            case ByteMutationKind.Truncate:
                if (n > 0) data.RemoveRange(pos, n - pos);
                break;
            case ByteMutationKind.Insert:
                var rng = new Random(m.Arg);
                var bytes = new byte[1 + m.Arg % 32];
                rng.NextBytes(bytes);
                data.InsertRange(Math.Min(pos, n), bytes);
                break;
            case ByteMutationKind.Delete when n > 0:
                data.RemoveRange(pos, Math.Min(1 + m.Arg % 64, n - pos));
                break;
            case ByteMutationKind.Duplicate when n > 0:
                int len = Math.Min(1 + m.Arg % 256, n - pos);
                data.InsertRange(pos, data.GetRange(pos, len));
                break;
            case ByteMutationKind.OverwriteInt64:
            case ByteMutationKind.OverwriteInt32:
                int width = m.Kind == ByteMutationKind.OverwriteInt64 ? 8 : 4;
                if (n < width) break;
                pos = Math.Min(pos, n - width);
                Span<byte> buffer = stackalloc byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(buffer, InterestingIntegers[m.Arg % InterestingIntegers.Length]);
                for (int i = 0; i < width; i++) data[pos + i] = buffer[i];
                break;
        }
    }
}

using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// The shuffled-teacher control (<c>--teacher shuffled</c>, issue #14): the teacher maps are computed exactly as for the
/// model teacher, then every calibrated sample gets the teacher maps of ANOTHER calibrated sample of the micro-batch, so
/// the CTCal term keeps its form, scale and regularising effect but no longer says where this sample's subjects are.
/// <list type="bullet">
/// <item>Which sample: a seeded derangement of the calibrated samples, drawn from the run's generator by
/// <see cref="Derangement"/> (Sattolo's algorithm: a uniformly random cyclic permutation, so no sample keeps its own
/// maps). The draw happens once per micro-batch with at least 2 calibrated samples, after the teacher pass and before
/// the student pass; it is part of the run's generator sequence, so checkpoints resume exactly.</item>
/// <item>Which noun: noun <c>i</c> of sample <c>b</c> gets noun <c>i mod n_b'</c> of the source sample <c>b'</c>
/// (<c>n_b'</c> its noun count, at least 1 for a calibrated sample). Every sub-word token of the target noun receives
/// the source noun's map averaged over its own sub-word tokens, so the aggregated noun map (<see cref="Calibration.AttentionMapAggregator"/>)
/// is exactly the source noun's.</item>
/// <item>Fewer than 2 calibrated samples (batch size 1, or a micro-batch whose other samples have no noun or
/// t_stu &lt;= t_tea): there is no other sample, so each layer's teacher map is circularly shifted by half its side
/// along both spatial axes (torch.roll), which moves every subject to the opposite quadrant; nothing is drawn.</item>
/// </list>
/// </summary>
internal static class ShuffledTeacher
{
    /// <summary>
    /// A random cyclic permutation of 0..n-1 (Sattolo 1986): <c>result[b]</c> is the sample whose maps sample
    /// <c>b</c> receives; no fixed point when n &gt;= 2. Draws n-1 uniforms from <paramref name="generator"/> (none for n &lt; 2).
    /// </summary>
    public static int[] Derangement(int n, Generator generator)
    {
        var result = Enumerable.Range(0, n).ToArray();
        if (n < 2) return result;
        double[] uniforms;
        using (var draws = rand(new long[] { n - 1 }, dtype: ScalarType.Float64, generator: generator)) uniforms = draws.data<double>().ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = Math.Min((int)(uniforms[n - 1 - i] * i), i - 1); // j in [0, i): never i itself, which makes one cycle
            (result[i], result[j]) = (result[j], result[i]);
        }
        return result;
    }

    /// <summary>
    /// The shuffled teacher maps. <paramref name="teacherMaps"/>: [n, heads, H*W, tokens] per layer, row b = calibrated
    /// sample b; <paramref name="nouns"/>: the token positions of each calibrated sample's nouns (row order as the maps).
    /// Draws the derangement from <paramref name="generator"/> when n &gt;= 2. Tensors belong to the caller's dispose scope.
    /// </summary>
    public static Dictionary<string, Tensor> Apply(IReadOnlyDictionary<string, Tensor> teacherMaps, IReadOnlyList<IReadOnlyList<int[]>> nouns,
        Generator generator)
    {
        if (nouns.Count < 2) return teacherMaps.ToDictionary(kv => kv.Key, kv => Rolled(kv.Value, kv.Key));
        return Permuted(teacherMaps, nouns, Derangement(nouns.Count, generator));
    }

    /// <summary>Row b of every map gets, for each of its nouns i, noun (i mod n_src) of row <paramref name="source"/>[b].</summary>
    internal static Dictionary<string, Tensor> Permuted(IReadOnlyDictionary<string, Tensor> teacherMaps, IReadOnlyList<IReadOnlyList<int[]>> nouns, int[] source)
    {
        using var _ = no_grad();
        var result = new Dictionary<string, Tensor>(teacherMaps.Count);
        foreach (var (layer, maps) in teacherMaps)
        {
            if (maps.shape[0] != nouns.Count)
                throw new ArgumentException($"teacher maps of '{layer}' have {maps.shape[0]} samples but {nouns.Count} samples have nouns");
            var shuffled = maps.detach().clone();
            for (int b = 0; b < nouns.Count; b++)
            {
                var from = nouns[source[b]];
                if (from.Count == 0) throw new ArgumentException($"sample {source[b]} has no noun to give its teacher map to sample {b}");
                for (int i = 0; i < nouns[b].Count; i++)
                {
                    var positions = tensor(from[i % from.Count].Select(p => (long)p).ToArray(), device: maps.device);
                    var map = maps.select(0, source[b]).index_select(-1, positions).mean(new long[] { -1 }); // [heads, H*W]
                    foreach (int position in nouns[b][i]) shuffled.select(0, b).select(-1, position).copy_(map);
                }
            }
            result[layer] = shuffled;
        }
        return result;
    }

    /// <summary>[n, heads, H*W, tokens] with each H x W map rolled by (H/2, W/2).</summary>
    internal static Tensor Rolled(Tensor maps, string layer)
    {
        using var _ = no_grad();
        long pixels = maps.shape[2];
        long side = (long)Math.Round(Math.Sqrt(pixels));
        if (side * side != pixels) throw new ArgumentException($"teacher maps of '{layer}' have {pixels} pixels, not a square map");
        var grid = maps.detach().reshape(maps.shape[0], maps.shape[1], side, side, maps.shape[3]);
        return grid.roll(new long[] { side / 2, side / 2 }, new long[] { 2, 3 }).reshape(maps.shape);
    }
}

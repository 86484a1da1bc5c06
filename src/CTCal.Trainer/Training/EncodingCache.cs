using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// <c>--cache-encodings</c>: each record's VAE posterior (<see cref="ITrainableDiffusionModel.EncodePosterior"/>, by record
/// index) and, when the text encoder is frozen, each caption's text embedding (by its token ids), kept after their first
/// encoding. A micro-batch encodes only what is missing (as one batch) and then samples the latents from the cached
/// posteriors with the run's generator, drawing exactly what the uncached path draws, so a run is the same with and without
/// the cache: bit for bit at batch size 1; at larger batches up to the rounding of the VAE/CLIP kernels when an image or
/// caption was first encoded next to different batch-mates. Held on the model's device; released on dispose.
/// Memory: 2·C·(R/f)² floats per image (131 KB for SD at 512 px) and tokens·width floats per distinct caption (236 KB for
/// SD 1.x's 77 x 768).
/// </summary>
internal sealed class EncodingCache : IDisposable
{
    private readonly Dictionary<int, Tensor> _posteriors = [];
    private readonly Dictionary<string, Tensor> _texts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _pooled = new(StringComparer.Ordinal); // pooled text vectors, for models that have them

    /// <summary>Bytes held by the cached tensors.</summary>
    public long Bytes => _posteriors.Values.Concat(_texts.Values).Concat(_pooled.Values).Sum(t => t.NumberOfElements * t.ElementSize);

    public int Posteriors => _posteriors.Count;
    public int Texts => _texts.Count;

    /// <summary>Scaled latents of records <paramref name="indices"/> whose pixels are <paramref name="pixels"/> ([B, 3, R, R]).</summary>
    public Tensor Latents(ITrainableDiffusionModel model, IReadOnlyList<int> indices, Tensor pixels, Generator generator)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Fill(indices, i => i, _posteriors, rows => model.EncodePosterior(Rows(pixels, rows)));
        var posterior = stack(indices.Select(i => _posteriors[i]).ToArray());
        return model.SamplePosterior(posterior, generator).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Text conditioning of the prompts <paramref name="ids"/> (rows of token ids) of a frozen encoder: hidden states
    /// [B, tokens, width] and, when the model has one, the pooled vector [B, width'] (cached per prompt beside the states).
    /// </summary>
    public TextConditioning Text(ITrainableDiffusionModel model, IReadOnlyList<long[]> ids)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var keys = ids.Select(row => string.Join(",", row)).ToList();
        Fill(Enumerable.Range(0, ids.Count).ToList(), b => keys[b], _texts,
            rows => model.EncodeText(tensor(rows.SelectMany(b => ids[b]).ToArray(), new long[] { rows.Count, ids[0].Length })), _pooled);
        var hidden = stack(keys.Select(k => _texts[k]).ToArray());
        var pooled = _pooled.ContainsKey(keys[0]) ? stack(keys.Select(k => _pooled[k]).ToArray()) : null;
        return new TextConditioning(hidden.MoveToOuterDisposeScope(), pooled?.MoveToOuterDisposeScope());
    }

    /// <summary>Encodes the batch rows whose key is not cached yet (each key once) and caches one row per key.</summary>
    private static void Fill<TKey>(IReadOnlyList<int> rowsOrIndices, Func<int, TKey> keyOf, Dictionary<TKey, Tensor> cache,
        Func<List<int>, Tensor> encode) where TKey : notnull =>
        Fill(rowsOrIndices, keyOf, cache, rows => new TextConditioning(encode(rows)), null);

    /// <summary>As above for a text conditioning: the hidden rows into <paramref name="cache"/>, the pooled rows (if any) into <paramref name="pooledCache"/>.</summary>
    private static void Fill<TKey>(IReadOnlyList<int> rowsOrIndices, Func<int, TKey> keyOf, Dictionary<TKey, Tensor> cache,
        Func<List<int>, TextConditioning> encode, Dictionary<TKey, Tensor>? pooledCache) where TKey : notnull
    {
        var missingRows = new List<int>();
        var missingKeys = new HashSet<TKey>();
        for (int row = 0; row < rowsOrIndices.Count; row++)
        {
            var key = keyOf(rowsOrIndices[row]);
            if (!cache.ContainsKey(key) && missingKeys.Add(key)) missingRows.Add(row);
        }
        if (missingRows.Count == 0) return;
        var encoded = encode(missingRows);
        for (int j = 0; j < missingRows.Count; j++)
        {
            var key = keyOf(rowsOrIndices[missingRows[j]]);
            cache[key] = encoded.Hidden[j].clone().DetachFromDisposeScope();
            if (encoded.Pooled is not null && pooledCache is not null) pooledCache[key] = encoded.Pooled[j].clone().DetachFromDisposeScope();
        }
    }

    private static Tensor Rows(Tensor batch, List<int> rows) =>
        rows.Count == batch.shape[0] && rows.Select((r, j) => r == j).All(x => x)
            ? batch
            : batch.index_select(0, tensor(rows.Select(r => (long)r).ToArray(), device: batch.device));

    public void Dispose()
    {
        foreach (var t in _posteriors.Values.Concat(_texts.Values).Concat(_pooled.Values)) t.Dispose();
        _pooled.Clear();
        _posteriors.Clear();
        _texts.Clear();
    }
}

using CTCal.Core.Probes;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using TorchSharp;
using static TorchSharp.torch;
using CTCal.Core.Text;

namespace CTCal.Trainer.Calibration;

/// <summary>Settings of <see cref="PremiseProbe.Run"/>.</summary>
public sealed record PremiseProbeOptions
{
    /// <summary>Records probed: the first this many of the dataset (in file order) that carry masks.</summary>
    public int Records { get; init; } = 64;

    /// <summary>Timesteps probed; the smallest plays the teacher, the largest the noisiest student.</summary>
    public IReadOnlyList<int> Timesteps { get; init; } = [0, 100, 250, 500, 750, 900];

    /// <summary>Seed of each record's VAE posterior sample and noise (stream: seed + record index).</summary>
    public long Seed { get; init; } = 1;
}

/// <summary>
/// Measures the premise CTCal rests on: that at a small timestep a noun token's cross-attention map already lies on its
/// subject, and that it lies there less at large timesteps. For each probed record (which has subject masks) and each
/// timestep t, the record's latents are noised at t with one seeded noise shared by every t (the forward process
/// q(x_t | x_0), DDPM eq. 4), the UNet runs once with every cross-attention layer (attn2) captured, and for each subject
/// noun (its sub-word tokens averaged, maps averaged over heads, as <see cref="AttentionMapAggregator"/> does) the
/// attention mass inside the subject's mask at that layer's resolution is compared with chance (the mask's area fraction).
/// </summary>
public static class PremiseProbe
{
    /// <summary>
    /// Mass of <paramref name="map"/> inside <paramref name="mask"/> (same length, one value per pixel):
    /// sum(map · mask) / sum(map); chance is mean(mask), the mass a uniform map would have. Mass is NaN for an all-zero map.
    /// </summary>
    public static (double Mass, double Chance) MassInside(ReadOnlySpan<float> map, ReadOnlySpan<float> mask)
    {
        if (map.Length != mask.Length || map.Length == 0)
            throw new ArgumentException($"a map of {map.Length} pixels and a mask of {mask.Length} do not match");
        double inside = 0, total = 0, area = 0;
        for (int i = 0; i < map.Length; i++)
        {
            inside += (double)map[i] * mask[i];
            total += map[i];
            area += mask[i];
        }
        return (total == 0 ? double.NaN : inside / total, area / map.Length);
    }

    /// <summary>
    /// Runs the probe on <paramref name="model"/> (frozen; nothing is trained) over the records of <paramref name="data"/>
    /// that carry masks. <paramref name="progress"/> receives (records done, records to probe).
    /// </summary>
    /// <exception cref="DatasetException">no record of the dataset carries masks.</exception>
    public static PremiseProbeResult Run(ITrainableDiffusionModel model, ImageCaptionDataset data, PremiseProbeOptions options,
        Action<int, int>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Records <= 0) throw new ArgumentException($"records must be positive, got {options.Records}");
        var timesteps = options.Timesteps.Distinct().Order().ToArray();
        if (timesteps.Length < 2) throw new ArgumentException("the probe needs at least two distinct timesteps (the smallest is the teacher)");
        var objective = model.CreateObjective(new TrainingOptions());
        int steps = objective.NumTrainTimesteps;
        foreach (int t in timesteps)
            if (t < 0 || t >= steps) throw new ArgumentException($"timestep {t} is outside the model's 0..{steps - 1}");
        var probed = Enumerable.Range(0, data.Records.Count).Where(i => data.Records[i].Masks is { Count: > 0 }).Take(options.Records).ToList();
        if (probed.Count == 0) throw new DatasetException($"{data.Folder}: no record carries subject masks ('masks' in metadata.jsonl); the probe needs them");

        var layers = model.CrossAttentionLayers.Select(l => l.Path).ToList();
        var selector = new NounSelector();
        var sums = new Dictionary<(int T, string Layer), Accumulator>();
        var sides = new Dictionary<string, int>(StringComparer.Ordinal);
        int nouns = 0, skipped = 0, unreadable = 0, done = 0;
        model.UNet.eval();
        model.TextEncoder.eval();
        foreach (int index in probed)
        {
            cancellation.ThrowIfCancellationRequested();
            var record = data.Records[index];
            var pixels = data.LoadImage(index);
            if (pixels is null) { unreadable++; continue; }
            var tokens = model.Tokenize(record.Caption);
            var selected = selector.Select(tokens.Words, record.Subjects).Nouns
                .Where(n => n.Subject is not null && record.Masks!.ContainsKey(n.Subject)).ToList();
            if (selected.Count == 0) { progress?.Invoke(++done, probed.Count); continue; }

            var maskCache = new Dictionary<int, IReadOnlyDictionary<string, float[]>>();
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                using var generator = new Generator((ulong)(options.Seed + index));
                int r = data.Resolution;
                var image = tensor(pixels, new long[] { 1, 3, r, r });
                var latents = model.EncodeImages(image, generator);
                var noise = objective.SampleNoise(latents, generator);
                long n = timesteps.Length;
                var t = objective.Timesteps(timesteps.Select(v => (double)v).ToList(), latents.device);
                var noisy = objective.AddNoise(latents.expand(n, -1, -1, -1), noise.expand(n, -1, -1, -1), t);
                var ids = tensor(tokens.InputIds, new long[] { 1, tokens.InputIds.Length });
                var context = model.EncodeText(ids).Expand(n);
                model.PredictNoise(noisy, t, context, layers, out var maps);
                foreach (string layer in layers)
                {
                    var perToken = maps[layer].mean(new long[] { 1 }).to(ScalarType.Float32).cpu(); // [T, HW, tokens]
                    long hw = perToken.shape[1], tokenCount = perToken.shape[2];
                    int side = (int)Math.Round(Math.Sqrt(hw));
                    sides[layer] = side;
                    if (!maskCache.TryGetValue(side, out var masks)) maskCache[side] = masks = data.LoadMasks(index, side);
                    float[] values = perToken.data<float>().ToArray();
                    foreach (var noun in selected)
                    {
                        float[] mask = masks[noun.Subject!];
                        for (int ti = 0; ti < timesteps.Length; ti++)
                        {
                            var map = new float[hw];
                            foreach (int p in noun.TokenPositions)
                            {
                                long offset = ti * hw * tokenCount + p;
                                for (long px = 0; px < hw; px++) map[px] += values[offset + px * tokenCount] / noun.TokenPositions.Length;
                            }
                            var (mass, chance) = MassInside(map, mask);
                            if (!(chance > 0) || double.IsNaN(mass)) { skipped++; continue; }
                            var key = (timesteps[ti], layer);
                            if (!sums.TryGetValue(key, out var acc)) sums[key] = acc = new Accumulator();
                            acc.Add(mass, chance);
                        }
                    }
                }
            }
            nouns += selected.Count;
            progress?.Invoke(++done, probed.Count);
        }

        var perLayer = new List<PremiseProbeRow>();
        foreach (int t in timesteps)
            foreach (string layer in layers)
                if (sums.TryGetValue((t, layer), out var acc)) perLayer.Add(acc.Row(t, layer, sides[layer]));
        var perResolution = new List<PremiseProbeRow>();
        foreach (int t in timesteps)
        {
            foreach (int side in sides.Values.Distinct().OrderByDescending(s => s))
            {
                var acc = new Accumulator();
                foreach (string layer in layers.Where(l => sides.GetValueOrDefault(l) == side))
                    if (sums.TryGetValue((t, layer), out var a)) acc.Merge(a);
                if (acc.Count > 0) perResolution.Add(acc.Row(t, PremiseProbeResult.AllLayers, side));
            }
        }
        return new PremiseProbeResult(timesteps, probed.Count - unreadable, nouns, skipped, perLayer, perResolution);
    }

    private sealed class Accumulator
    {
        private double _mass, _chance, _ratio;

        public int Count { get; private set; }

        public void Add(double mass, double chance)
        {
            _mass += mass;
            _chance += chance;
            _ratio += mass / chance;
            Count++;
        }

        public void Merge(Accumulator other)
        {
            _mass += other._mass;
            _chance += other._chance;
            _ratio += other._ratio;
            Count += other.Count;
        }

        public PremiseProbeRow Row(int t, string layer, int side) => new(t, layer, side, _mass / Count, _chance / Count, _ratio / Count, Count);
    }
}

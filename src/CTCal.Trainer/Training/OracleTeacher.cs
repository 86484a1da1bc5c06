using CTCal.Trainer.Calibration;
using CTCal.Trainer.Data;
using static TorchSharp.torch;
using CTCal.Core.Text;

namespace CTCal.Trainer.Training;

/// <summary>A calibrated noun for <see cref="OracleTeacher.Maps"/>: its token positions and its subject's mask per map side.</summary>
/// <param name="TokenPositions">The noun's token positions in the encoder input.</param>
/// <param name="MaskBySide">The subject's mask area-averaged to each layer's map side (side² values in [0, 1], row-major).</param>
public sealed record OracleNoun(int[] TokenPositions, IReadOnlyDictionary<int, float[]> MaskBySide);

/// <summary>
/// The oracle teacher of <c>--teacher oracle</c> (an upper-bound control): instead of the model's own maps at t_tea, each
/// calibrated noun's teacher map is its subject's mask from the dataset (<c>masks</c> in <c>metadata.jsonl</c>).
/// <para>Shape and normalisation follow the model's teacher maps, so <see cref="CtcalLoss"/> compares like with like: per
/// calibrated layer a [B, 1, H*W, tokens] tensor (one head; <see cref="AttentionMapAggregator"/> averages heads, so one head
/// holding the map is the same as every head holding it) whose rows are attention distributions over the tokens (softmax
/// output: non-negative, summing to 1 per pixel). At pixel p a noun with mask value m(p) gets probability m(p) (divided by
/// the masks' sum where subjects overlap to more than 1), shared equally by its sub-word tokens; the rest goes to the
/// start token (position 0), where SD's cross-attention puts its spare mass. After the aggregator averages the noun's
/// tokens and CtcalLoss scales each noun map to mean 1, the teacher is exactly the normalised mask. A mask that is empty
/// at a layer's side gives a uniform map there (no location, rather than an all-zero target).</para>
/// </summary>
public sealed class OracleTeacher
{
    private readonly ImageCaptionDataset _data;
    private readonly IReadOnlyList<(string Path, int Side)> _layers;
    private readonly Dictionary<int, IReadOnlyList<string>> _subjects = new();
    private readonly Dictionary<(int Record, int Side), IReadOnlyDictionary<string, float[]>> _masks = new();

    /// <summary>
    /// Checks (<see cref="RequireMasks"/>) that every record's calibrated nouns have masks, and keeps the calibrated
    /// <paramref name="layers"/> with their map sides at <paramref name="data"/>'s resolution.
    /// </summary>
    public OracleTeacher(ITrainableDiffusionModel model, ImageCaptionDataset data, IReadOnlyList<string> layers)
    {
        _data = data;
        var subjects = RequireMasks(model, data);
        for (int i = 0; i < subjects.Count; i++) _subjects[i] = subjects[i];
        int latentSide = data.Resolution / model.VaeScaleFactor;
        var downscale = model.CrossAttentionLayers.ToDictionary(l => l.Path, l => l.Downscale, StringComparer.Ordinal);
        _layers = layers.Select(l => (l, (latentSide + downscale[l] - 1) / downscale[l])).ToList();
    }

    /// <summary>
    /// The subject of each calibrated noun of every record (in the order <see cref="NounSelector"/> gives the nouns, the
    /// order of the trainer's noun tokens). Throws a <see cref="DatasetException"/> naming the metadata file, line and
    /// subject of every record (the first 10) whose calibrated noun has no mask: a record without <c>masks</c>, without
    /// <c>subjects</c> (its nouns then come from the lexicon and name no mask), or lacking a subject's mask.
    /// </summary>
    public static IReadOnlyList<IReadOnlyList<string>> RequireMasks(ITrainableDiffusionModel model, ImageCaptionDataset data)
    {
        var selector = new NounSelector();
        var result = new List<IReadOnlyList<string>>(data.Records.Count);
        var problems = new List<string>();
        foreach (var record in data.Records)
        {
            var nouns = selector.Select(model.Tokenize(record.Caption).Words, record.Subjects).Nouns;
            var subjects = new List<string>(nouns.Count);
            foreach (var noun in nouns)
            {
                if (noun.Subject is null)
                    problems.Add($"{Path.Combine(data.Folder, record.Origin)}: noun '{noun.Text}' is not one of the record's subjects (give 'subjects' and 'masks')");
                else if (record.Masks is null || !record.Masks.ContainsKey(noun.Subject))
                    problems.Add($"{Path.Combine(data.Folder, record.Origin)}: subject '{noun.Subject}' has no mask{(record.Masks is null ? " (the record has no 'masks')" : "")}");
                subjects.Add(noun.Subject ?? "");
            }
            result.Add(subjects);
        }
        if (problems.Count > 0)
            throw new DatasetException($"--teacher oracle needs a subject mask for every calibrated noun; {problems.Count} missing:{Environment.NewLine}  "
                + string.Join(Environment.NewLine + "  ", problems.Take(10)) + (problems.Count > 10 ? $"{Environment.NewLine}  ..." : ""));
        return result;
    }

    /// <summary>
    /// Teacher maps for the calibrated samples (dataset record indices <paramref name="records"/>, nouns as the trainer
    /// selected them in <paramref name="nouns"/>), keyed by layer path like the model's; in the caller's dispose scope.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Maps(IReadOnlyList<int> records, IReadOnlyList<IReadOnlyList<int[]>> nouns, int tokenCount, Device device)
    {
        var samples = new List<IReadOnlyList<OracleNoun>>(records.Count);
        for (int b = 0; b < records.Count; b++)
        {
            var subjects = _subjects[records[b]];
            if (subjects.Count != nouns[b].Count)
                throw new InvalidOperationException($"{_data.Records[records[b]].Origin}: {nouns[b].Count} calibrated nouns but {subjects.Count} subjects");
            var bySide = _layers.Select(l => l.Side).Distinct().ToDictionary(s => s, s => Masks(records[b], s));
            samples.Add(nouns[b].Select((positions, k) => new OracleNoun(positions,
                bySide.ToDictionary(kv => kv.Key, kv => kv.Value[subjects[k]]))).ToList());
        }
        return Maps(samples, _layers, tokenCount, device);
    }

    /// <summary>Record <paramref name="record"/>'s masks at <paramref name="side"/>, decoded once and kept (side² floats per subject).</summary>
    private IReadOnlyDictionary<string, float[]> Masks(int record, int side)
    {
        if (!_masks.TryGetValue((record, side), out var masks)) _masks[(record, side)] = masks = _data.LoadMasks(record, side);
        return masks;
    }

    /// <summary>
    /// The oracle maps of <paramref name="samples"/> for each of <paramref name="layers"/> (path, map side): [B, 1, side², tokens]
    /// attention distributions as described on the class.
    /// </summary>
    public static Dictionary<string, Tensor> Maps(IReadOnlyList<IReadOnlyList<OracleNoun>> samples, IReadOnlyList<(string Path, int Side)> layers,
        int tokenCount, Device? device = null)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (path, side) in layers)
        {
            int pixels = side * side;
            var data = new float[samples.Count * pixels * tokenCount];
            for (int b = 0; b < samples.Count; b++)
            {
                var masks = samples[b].Select(n => n.MaskBySide.TryGetValue(side, out var m) && m.Length == pixels ? m
                    : throw new ArgumentException($"sample {b}: no {side}x{side} mask for a noun (layer '{path}')")).ToArray();
                var empty = masks.Select(m => m.All(v => v <= 0)).ToArray();
                for (int p = 0; p < pixels; p++)
                {
                    double sum = 0;
                    for (int k = 0; k < masks.Length; k++) sum += empty[k] ? 1.0 / pixels : masks[k][p];
                    double scale = sum > 1 ? 1 / sum : 1;
                    int row = (b * pixels + p) * tokenCount;
                    double used = 0;
                    for (int k = 0; k < masks.Length; k++)
                    {
                        double value = (empty[k] ? 1.0 / pixels : masks[k][p]) * scale;
                        int[] positions = samples[b][k].TokenPositions;
                        foreach (int position in positions)
                        {
                            if (position <= 0 || position >= tokenCount)
                                throw new ArgumentException($"sample {b}: noun token position {position} is outside 1..{tokenCount - 1}");
                            data[row + position] += (float)(value / positions.Length);
                        }
                        used += value;
                    }
                    data[row] += (float)Math.Max(0, 1 - used);
                }
            }
            result[path] = tensor(data, new long[] { samples.Count, 1, pixels, tokenCount }, device: device);
        }
        return result;
    }
}

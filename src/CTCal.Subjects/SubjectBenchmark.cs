using System.Diagnostics;

namespace CTCal.Subjects;

/// <summary>What <see cref="SubjectBenchmark.Run"/> measured on a labelled set.</summary>
/// <param name="Captions">Captions in the set.</param>
/// <param name="Lexicon">The lexicon's word-level score.</param>
/// <param name="Model">The model's score (its validated answers, the lexicon where it fell back).</param>
/// <param name="Fallbacks">Captions where the model's answer was invalid (first round).</param>
/// <param name="CaptionsPerSecond">Throughput of each timed round through the model, in order.</param>
public sealed record SubjectBenchmarkResult(int Captions, SubjectScore Lexicon, SubjectScore Model, int Fallbacks, IReadOnlyList<double> CaptionsPerSecond)
{
    /// <summary>The median of <see cref="CaptionsPerSecond"/>.</summary>
    public double MedianCaptionsPerSecond
    {
        get
        {
            var sorted = CaptionsPerSecond.Order().ToArray();
            if (sorted.Length == 0) return 0;
            int mid = sorted.Length / 2;
            return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
        }
    }
}

/// <summary>
/// The subjects benchmark: the lexicon's and a model's precision/recall on a labelled caption set
/// (<see cref="SubjectScoring"/>), and captions per second through the model in batches. The scores come from the first
/// round (decoding is greedy, so later rounds answer the same); every round is timed.
/// </summary>
public static class SubjectBenchmark
{
    /// <summary>Scores and times <paramref name="model"/> (with <paramref name="lexicon"/> as fallback) on <paramref name="items"/>.</summary>
    public static SubjectBenchmarkResult Run(IReadOnlyList<LabelledSubjects> items, ISubjectModel model, LexiconSubjects lexicon, int batchSize, int rounds)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(lexicon);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(rounds, 1);
        if (items.Count == 0) throw new ArgumentException("the labelled set is empty", nameof(items));

        var lexiconScore = SubjectScoring.Score(items, items.Select(i => lexicon.Of(i.Caption)).ToArray());
        SubjectScore? modelScore = null;
        int fallbacks = 0;
        var rates = new List<double>();
        for (int round = 0; round < rounds; round++)
        {
            var extractor = new SubjectExtractor(model, lexicon);
            var clock = Stopwatch.StartNew();
            var results = items.Chunk(batchSize).SelectMany(b => extractor.Extract(b.Select(i => i.Caption).ToArray())).ToArray();
            rates.Add(items.Count / clock.Elapsed.TotalSeconds);
            if (modelScore is null)
            {
                modelScore = SubjectScoring.Score(items, results.Select(r => r.Subjects).ToArray());
                fallbacks = extractor.FallbackCount;
            }
        }
        return new SubjectBenchmarkResult(items.Count, lexiconScore, modelScore!, fallbacks, rates);
    }
}

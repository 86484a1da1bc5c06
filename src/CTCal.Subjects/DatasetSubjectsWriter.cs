using System.Diagnostics;
using CTCal.Core.Datasets;
using CTCal.Core.IO;

namespace CTCal.Subjects;

/// <summary>What <see cref="DatasetSubjectsWriter.Run"/> did.</summary>
/// <param name="Layout">The dataset's layout as read.</param>
/// <param name="Records">Records in the dataset.</param>
/// <param name="Kept">Records whose existing <c>subjects</c> were left alone (not asked to overwrite, or they have masks).</param>
/// <param name="FromCache">Records answered from the cache of an earlier run.</param>
/// <param name="Asked">Distinct captions asked of the model in this run.</param>
/// <param name="ModelAnswers">Of those, answers that passed validation.</param>
/// <param name="Fallbacks">Of those, lexicon fallbacks by reason.</param>
/// <param name="Seconds">Time spent asking the model.</param>
/// <param name="Backup">The original <c>metadata.jsonl</c> kept beside it (null when the layout had none).</param>
public sealed record DatasetSubjectsReport(string Layout, int Records, int Kept, int FromCache, int Asked, int ModelAnswers,
    IReadOnlyDictionary<AnswerProblem, int> Fallbacks, double Seconds, string? Backup)
{
    /// <summary>Captions per second through the model in this run (0 when none were asked).</summary>
    public double CaptionsPerSecond => Asked == 0 || Seconds <= 0 ? 0 : Asked / Seconds;
}

/// <summary>
/// Writes <c>subjects</c> into a dataset's <c>metadata.jsonl</c> from an <see cref="SubjectExtractor"/> (the verb
/// <c>ctcal-train subjects</c>). Records that already have subjects are left alone unless <c>overwrite</c> (records with
/// masks always are: their masks are keyed by their subjects). Captions are asked in batches; each batch's answers are
/// appended to the <see cref="SubjectCache"/> before the next, so a killed run resumes where it stopped. At the end the
/// original <c>metadata.jsonl</c> is kept as <c>metadata.jsonl.orig</c> (the first original: an existing one is never
/// replaced) and the new file replaces it in one atomic step. An image + .txt dataset gets a new <c>metadata.jsonl</c>
/// with its images, captions and subjects (the .txt files stay; the trainer then reads the metadata layout, same captions).
/// </summary>
public static class DatasetSubjectsWriter
{
    /// <summary>The original's name beside <c>metadata.jsonl</c>.</summary>
    public const string BackupName = MetadataJsonl.FileName + ".orig";

    /// <summary>Runs over <paramref name="folder"/>; <paramref name="progress"/> gets (captions done, captions to ask).</summary>
    public static DatasetSubjectsReport Run(string folder, SubjectExtractor extractor, SubjectCache cache, bool overwrite, int batchSize,
        Action<int, int>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(extractor);
        ArgumentNullException.ThrowIfNull(cache);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batch size must be at least 1");
        var (records, layout) = CaptionedFolder.Read(folder);
        bool Needs(MetadataLine r) => r.Masks is null && (r.Subjects is not { Count: > 0 } || overwrite);

        int fromCache = 0;
        var toAsk = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in records.Where(Needs))
        {
            if (cache.Get(r.Text) is not null) { fromCache++; continue; }
            if (seen.Add(CaptionWords.Normalise(r.Text))) toAsk.Add(r.Text);
        }

        int answeredBefore = extractor.ModelAnswers;
        var fallbacksBefore = extractor.Fallbacks.ToDictionary(p => p.Key, p => p.Value);
        var clock = Stopwatch.StartNew();
        progress?.Invoke(0, toAsk.Count);
        for (int start = 0; start < toAsk.Count; start += batchSize)
        {
            ct.ThrowIfCancellationRequested();
            var batch = toAsk.Skip(start).Take(batchSize).ToArray();
            cache.Add(extractor.Extract(batch));
            progress?.Invoke(start + batch.Length, toAsk.Count);
        }
        double seconds = clock.Elapsed.TotalSeconds;

        var updated = records.Select(r => Needs(r) ? r with { Subjects = cache.Get(r.Text)!.Subjects } : r).ToArray();
        string metadata = Path.Combine(folder, MetadataJsonl.FileName);
        string? backup = null;
        if (layout == "metadata.jsonl")
        {
            backup = Path.Combine(folder, BackupName);
            if (!File.Exists(backup)) AtomicFile.Copy(metadata, backup, keepLastWriteTime: true);
        }
        MetadataJsonl.Write(metadata, updated);

        var fallbacks = extractor.Fallbacks.ToDictionary(p => p.Key, p => p.Value - fallbacksBefore.GetValueOrDefault(p.Key));
        return new DatasetSubjectsReport(layout, records.Count, records.Count(r => !Needs(r)), fromCache, toAsk.Count,
            extractor.ModelAnswers - answeredBefore, fallbacks.Where(p => p.Value > 0).ToDictionary(p => p.Key, p => p.Value), seconds, backup);
    }
}

using CTCal.Subjects;
using CTCal.Trainer.Data;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>--subjects llm:&lt;folder&gt;</c>: gives every record without <c>subjects</c> the subjects a local ONNX Runtime
/// GenAI model answers for its caption (validated, lexicon fallback), through the dataset's answer cache
/// (<see cref="SubjectCache"/>), so a resumed or repeated run asks only for captions it has not seen. The dataset's files
/// are not changed (<c>ctcal-train subjects</c> writes them into metadata.jsonl instead).
/// </summary>
internal static class LlmSubjects
{
    public const int BatchSize = 16;

    public static ImageCaptionDataset Fill(CliContext context, ImageCaptionDataset dataset, string modelFolder)
    {
        var missing = dataset.Records.Where(r => r.Subjects is not { Count: > 0 }).Select(r => r.Caption).ToArray();
        if (missing.Length == 0) return dataset;
        var lexicon = new LexiconSubjects();
        using var model = new GenaiSubjectModel(modelFolder, lexicon.IsLayout);
        var extractor = new SubjectExtractor(model, lexicon);
        var cache = SubjectCache.Open(dataset.Folder, SubjectCache.ModelKey(modelFolder, "constrained"));
        var toAsk = missing.Where(c => cache.Get(c) is null).DistinctBy(CaptionWords.Normalise).ToArray();
        for (int start = 0; start < toAsk.Length; start += BatchSize)
        {
            context.Cancellation.Token.ThrowIfCancellationRequested();
            cache.Add(extractor.Extract(toAsk.Skip(start).Take(BatchSize).ToArray()));
            context.Err.WriteLine(SubjectsVerb.ProgressBar(Math.Min(start + BatchSize, toAsk.Length), toAsk.Length, 0));
        }
        context.Info($"subjects: {missing.Length} records without subjects, {missing.Length - toAsk.Length} from the cache, {toAsk.Length} asked of {modelFolder}: " +
            $"{extractor.ModelAnswers} answered, {extractor.FallbackCount} lexicon fallbacks");
        return dataset.WithSubjects(r => r.Subjects is { Count: > 0 } ? r.Subjects : cache.Get(r.Caption)!.Subjects);
    }
}

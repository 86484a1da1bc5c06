using System.CommandLine;
using System.Diagnostics;
using CTCal.Subjects;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>ctcal-train subjects</c>: asks a local ONNX Runtime GenAI model folder for the subjects of each caption of a
/// dataset and writes them as <c>subjects</c> into its <c>metadata.jsonl</c> (<see cref="DatasetSubjectsWriter"/>:
/// atomic, the original kept as <c>metadata.jsonl.orig</c>, resumable through the answer cache beside the dataset).
/// Every answer is validated against its caption; an invalid one falls back to the lexicon and is counted.
/// </summary>
internal sealed class SubjectsVerb(CliContext context)
{
    public Command Build()
    {
        var data = new Option<string>("--data") { Description = "dataset folder (metadata.jsonl, or images with .txt captions)", Required = true };
        var model = new Option<string>("--model") { Description = "ONNX Runtime GenAI model folder (genai_config.json, the ONNX decoder, tokenizer.json)", Required = true };
        var overwrite = new Option<bool>("--overwrite") { Description = "ask again for records that already have subjects (records with masks are always kept)" };
        var batch = new Option<int>("--batch") { Description = "captions per model call (and per cache flush)", DefaultValueFactory = _ => 16 };
        var unconstrained = new Option<bool>("--unconstrained") { Description = "decode without the runtime's regex guidance (answers are validated either way)" };
        var provider = new Option<string?>("--provider") { Description = "GenAI execution provider: cuda or dml (GPU builds, -p:CTCalGpu=...); default the CPU" };
        var command = new Command("subjects", "Write 'subjects' into a dataset's metadata.jsonl from a local ONNX Runtime GenAI model (validated, lexicon fallback, resumable).");
        foreach (var o in new Option[] { data, model, overwrite, batch, unconstrained, provider }) command.Options.Add(o);
        command.SetAction(parse => context.Guarded(() =>
        {
            string dataFolder = parse.GetValue(data)!, modelFolder = parse.GetValue(model)!;
            int batchSize = parse.GetValue(batch);
            if (batchSize < 1) throw new UsageException($"--batch must be positive, got {batchSize}");
            string? ep = parse.GetValue(provider);
            if (ep is not null and not ("cuda" or "dml")) throw new UsageException($"--provider must be cuda or dml, got '{ep}'");
            if (!Directory.Exists(dataFolder)) throw new UsageException($"--data '{dataFolder}' does not exist");

            var report = Run(context, dataFolder, modelFolder, parse.GetValue(overwrite), batchSize, !parse.GetValue(unconstrained), ep);
            context.Out.WriteLine(
                $"subjects: {report.Records} records ({report.Layout}), {report.Kept} kept, {report.FromCache} from the cache, {report.Asked} asked: " +
                $"{report.ModelAnswers} answered by the model, {report.Fallbacks.Values.Sum()} lexicon fallbacks" +
                (report.Fallbacks.Count == 0 ? "" : $" ({string.Join(", ", report.Fallbacks.Select(f => $"{f.Key} {f.Value}"))})") +
                $"; {report.CaptionsPerSecond:F1} captions/s" + (report.Backup is null ? "" : $"; original kept as {report.Backup}"));
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>Loads the model and runs the writer with a progress bar on stderr.</summary>
    internal static DatasetSubjectsReport Run(CliContext context, string dataFolder, string modelFolder, bool overwrite, int batchSize, bool constrained, string? provider)
    {
        var lexicon = new LexiconSubjects();
        using var model = new GenaiSubjectModel(modelFolder, lexicon.IsLayout, constrained, provider);
        var extractor = new SubjectExtractor(model, lexicon);
        var cache = SubjectCache.Open(dataFolder, SubjectCache.ModelKey(modelFolder, constrained ? "constrained" : "free"));
        var clock = Stopwatch.StartNew();
        return DatasetSubjectsWriter.Run(dataFolder, extractor, cache, overwrite, batchSize,
            (done, total) => context.Err.WriteLine(ProgressBar(done, total, clock.Elapsed.TotalSeconds)), context.Cancellation.Token);
    }

    /// <summary>One progress line: a 30-character bar, done/total and the rate.</summary>
    internal static string ProgressBar(int done, int total, double seconds)
    {
        const int Width = 30;
        int filled = total == 0 ? Width : (int)((long)done * Width / total);
        string rate = seconds > 0 && done > 0 ? $", {done / seconds:F1} captions/s" : "";
        return $"subjects [{new string('#', filled)}{new string('.', Width - filled)}] {done}/{total}{rate}";
    }
}

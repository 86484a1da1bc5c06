using System.CommandLine;
using System.Globalization;
using CTCal.Subjects;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>ctcal-train bench subjects</c>: on a labelled caption file (<c>caption | subject, subject</c> per line; the repo's
/// set is <c>tests/data/subjects/labelled.txt</c>), the lexicon's and a GenAI model's word-level precision, recall and
/// exact-caption rate, and captions per second through the runtime (median of <c>--rounds</c>). Prints <c>key=value</c> lines.
/// </summary>
internal sealed class BenchSubjectsCommand(CliContext context)
{
    public Command Build()
    {
        var model = new Option<string>("--model") { Description = "ONNX Runtime GenAI model folder (e.g. assets/subjects-model)", Required = true };
        var labelled = new Option<string>("--labelled") { Description = "labelled captions: 'caption | subject, subject' per line (e.g. tests/data/subjects/labelled.txt)", Required = true };
        var batch = new Option<int>("--batch") { Description = "captions per model call", DefaultValueFactory = _ => 16 };
        var rounds = new Option<int>("--rounds") { Description = "timed passes over the set (the median is printed)", DefaultValueFactory = _ => 3 };
        var unconstrained = new Option<bool>("--unconstrained") { Description = "decode without the runtime's regex guidance" };
        var provider = new Option<string?>("--provider") { Description = "GenAI execution provider: cuda or dml (GPU builds); default the CPU" };
        var command = new Command("subjects", "Precision/recall of the lexicon and of a GenAI model on a labelled caption set, and captions/s through the runtime.");
        foreach (var o in new Option[] { model, labelled, batch, rounds, unconstrained, provider }) command.Options.Add(o);
        command.SetAction(parse => context.Guarded(() =>
        {
            string modelFolder = parse.GetValue(model)!, file = parse.GetValue(labelled)!;
            int batchSize = parse.GetValue(batch), roundCount = parse.GetValue(rounds);
            if (batchSize < 1) throw new UsageException($"--batch must be positive, got {batchSize}");
            if (roundCount < 1) throw new UsageException($"--rounds must be positive, got {roundCount}");
            string? ep = parse.GetValue(provider);
            if (ep is not null and not ("cuda" or "dml")) throw new UsageException($"--provider must be cuda or dml, got '{ep}'");
            if (!File.Exists(file)) throw new UsageException($"--labelled '{file}' does not exist");
            if (!Directory.Exists(modelFolder)) throw new UsageException($"--model '{modelFolder}' does not exist");
            IReadOnlyList<LabelledSubjects> items;
            try
            {
                items = SubjectScoring.Read(file);
            }
            catch (InvalidDataException e)
            {
                throw new UsageException(e.Message);
            }
            if (items.Count == 0) throw new UsageException($"--labelled '{file}' has no labelled captions");

            var lexicon = new LexiconSubjects();
            using var subjectModel = new GenaiSubjectModel(modelFolder, lexicon.IsLayout, !parse.GetValue(unconstrained), ep);
            var result = SubjectBenchmark.Run(items, subjectModel, lexicon, batchSize, roundCount);
            foreach (string line in Lines(result)) context.Out.WriteLine(line);
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>The printed lines: <c>key=value</c>, invariant culture, rates in captions/s, scores as fractions.</summary>
    internal static IEnumerable<string> Lines(SubjectBenchmarkResult r)
    {
        var c = CultureInfo.InvariantCulture;
        yield return string.Create(c, $"captions={r.Captions}");
        foreach (var (name, score) in new[] { ("lexicon", r.Lexicon), ("model", r.Model) })
            yield return string.Create(c, $"{name}_precision={score.Precision:F4} {name}_recall={score.Recall:F4} {name}_exact={score.ExactRate:F4}");
        yield return string.Create(c, $"model_fallbacks={r.Fallbacks}");
        yield return string.Create(c, $"captions_per_s_median={r.MedianCaptionsPerSecond:F1} rounds={string.Join(",", r.CaptionsPerSecond.Select(x => x.ToString("F1", c)))}");
    }
}

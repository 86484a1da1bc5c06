using CTCal.Core.Datasets;
using CTCal.Subjects;
using CTCal.Tests;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Subjects.Tests;

/// <summary>
/// The shipped tiny subject model (<c>assets/subjects-model</c>, trained by <c>ctcal-train base subjects-model</c> and
/// written by <c>ctcal-export genai</c>) through the real ONNX Runtime GenAI runtime: it answers the subjects of held-out
/// synthetic captions, and the dataset verb runs on it end to end.
/// </summary>
public sealed class ShippedSubjectModelTests(ITestOutputHelper output)
{
    /// <summary>assets/subjects-model.</summary>
    public static string ModelFolder => Path.Combine(TestPaths.RepoRoot, "assets", "subjects-model");

    private static readonly LexiconSubjects Lexicon = new();

    /// <summary>The synthetic world's training captions (seed 1, 2000 records: what the model trained on) and its
    /// evaluation prompts whose captions are not among them (as CTCal.BaseModel's SubjectCaptionSampler splits them).</summary>
    private static ((string Caption, IReadOnlyList<string> Subjects)[] Train, (string Caption, IReadOnlyList<string> Subjects)[] HeldOut) World()
    {
        var world = CTCal.Synthetic.SyntheticWorld.Create(new CTCal.Synthetic.SyntheticWorldOptions { Seed = 1, TrainCount = 2000 });
        var train = world.TrainRecords.Select(r => (r.Caption, r.Subjects)).ToArray();
        var seen = train.Select(t => t.Caption).ToHashSet(StringComparer.Ordinal);
        var heldOut = world.EvalPrompts.Where(p => !seen.Contains(p.Prompt)).Select(p => (p.Prompt, p.Subjects)).DistinctBy(p => p.Prompt).ToArray();
        return (train, heldOut);
    }

    [Fact]
    public void ItAnswersTheSubjectsOfHeldOutSyntheticCaptions()
    {
        var (_, heldOut) = World();
        Assert.True(heldOut.Length >= 50, $"only {heldOut.Length} held-out captions");
        using var model = new GenaiSubjectModel(ModelFolder, Lexicon.IsLayout);
        var extractor = new SubjectExtractor(model, Lexicon);
        var results = new List<SubjectResult>();
        foreach (var batch in heldOut.Chunk(16)) results.AddRange(extractor.Extract(batch.Select(c => c.Caption).ToArray()));
        int exact = results.Zip(heldOut).Count(p => p.First.Source == SubjectSource.Model && p.First.Subjects.Order().SequenceEqual(p.Second.Subjects.Order()));
        double accuracy = (double)exact / heldOut.Length;
        output.WriteLine($"held-out synthetic captions: {exact}/{heldOut.Length} exact ({accuracy:P1}) through ONNX Runtime GenAI; {extractor.FallbackCount} fallbacks");
        Assert.True(accuracy >= 0.9, $"held-out accuracy {accuracy:P1}");
    }

    [Fact]
    public void TheDatasetVerbRunsOnTheShippedModel()
    {
        string dir = TestPaths.NewTempDir("ctcal-subjects-shipped");
        try
        {
            var (train, _) = World();
            var captions = train.Take(12).ToArray();
            MetadataJsonl.Write(Path.Combine(dir, MetadataJsonl.FileName), captions.Select((c, i) => new MetadataLine($"{i}.png", c.Caption)));
            using var model = new GenaiSubjectModel(ModelFolder, Lexicon.IsLayout);
            var cache = SubjectCache.Open(dir, SubjectCache.ModelKey(ModelFolder, "constrained"));
            var report = DatasetSubjectsWriter.Run(dir, new SubjectExtractor(model, Lexicon), cache, overwrite: false, batchSize: 4);
            var lines = MetadataJsonl.Read(Path.Combine(dir, MetadataJsonl.FileName)).Select(l => l.Line!).ToArray();
            Assert.All(lines, l => Assert.NotEmpty(l.Subjects!));
            Assert.Equal(captions.Select(c => c.Caption).Distinct().Count(), report.Asked);
            int right = lines.Zip(captions).Count(p => p.First.Subjects!.Order().SequenceEqual(p.Second.Subjects.Order()));
            output.WriteLine($"dataset verb: {right}/{captions.Length} records right, {report.ModelAnswers} model answers, {report.CaptionsPerSecond:F1} captions/s");
            Assert.True(right >= 10, $"{right}/12 right");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>The benchmark line on the labelled set: the lexicon's and the shipped model's word-level precision/recall
/// (printed, not asserted: a measurement, not a goal) and captions/s through the runtime.</summary>
public sealed class LabelledSetBenchmark(ITestOutputHelper output)
{
    [Fact]
    public void LexiconAndModelAreScoredOnTheLabelledSet()
    {
        var items = SubjectScoring.Read(LabelledSetTests.LabelledFile);
        var lexicon = new LexiconSubjects();
        using var model = new GenaiSubjectModel(ShippedSubjectModelTests.ModelFolder, lexicon.IsLayout);
        var result = SubjectBenchmark.Run(items, model, lexicon, batchSize: 16, rounds: 1);
        output.WriteLine($"labelled set ({result.Captions} captions): lexicon P {result.Lexicon.Precision:P1} R {result.Lexicon.Recall:P1} exact {result.Lexicon.ExactRate:P1}; " +
            $"model (+fallback) P {result.Model.Precision:P1} R {result.Model.Recall:P1} exact {result.Model.ExactRate:P1}, {result.Fallbacks} fallbacks; {result.MedianCaptionsPerSecond:F1} captions/s");
        Assert.Equal(items.Count, result.Model.Captions);
        // The lexicon's score is the scoring of its own answers: the benchmark adds nothing of its own to it.
        Assert.Equal(SubjectScoring.Score(items, items.Select(i => lexicon.Of(i.Caption)).ToArray()), result.Lexicon);
        Assert.True(result.Model.Predicted > 0 && result.Model.TruePositives <= result.Model.Predicted);
        Assert.Single(result.CaptionsPerSecond);
    }
}

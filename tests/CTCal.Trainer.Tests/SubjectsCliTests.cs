using System.Text.Json;
using CTCal.Core.Datasets;
using CTCal.Subjects;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>
/// The command-line faces of subjects from a GenAI model, through the real runtime on the shipped tiny model:
/// <c>ctcal-train subjects</c>, <c>train --subjects llm:&lt;folder&gt;</c> and <c>bench subjects</c>.
/// </summary>
public sealed class SubjectsCliTests : IDisposable
{
    private static readonly string ModelFolder = Path.Combine(TestPaths.RepoRoot, "assets", "subjects-model");
    private static readonly string[] Captions = ["a red cube to the left of a green sphere", "two blue cones", "a yellow cylinder above a purple cube", "a green sphere"];

    private readonly string _dir = TestPaths.NewTempDir("ctcal-subjects-cli");
    private readonly StringWriter _out = new();
    private readonly StringWriter _err = new();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private TrainerCli Cli() => new(_ => new ToyDiffusionModel(), _out, _err);

    [Fact]
    public void SubjectsVerbWritesSubjectsKeepsTheOriginalAndAsksNothingTheSecondTime()
    {
        string data = TrainingRunTests.MakeDataset(_dir, captions: Captions);
        string metadata = Path.Combine(data, MetadataJsonl.FileName);
        byte[] original = File.ReadAllBytes(metadata);

        int code = Cli().Run(["subjects", "--data", data, "--model", ModelFolder, "--batch", "3"]);
        Assert.True(code == ExitCodes.Ok, _err.ToString());
        Assert.Contains("4 records (metadata.jsonl), 0 kept, 0 from the cache, 4 asked", _out.ToString());
        Assert.Equal(original, File.ReadAllBytes(Path.Combine(data, DatasetSubjectsWriter.BackupName)));
        var lines = MetadataJsonl.Read(metadata).Select(l => l.Line!).ToArray();
        Assert.Equal(Captions, lines.Select(l => l.Text));
        Assert.All(lines, l => Assert.NotEmpty(l.Subjects!));
        Assert.All(lines, l => Assert.All(l.Subjects!, s => Assert.Contains(s, l.Text, StringComparison.Ordinal)));
        Assert.Equal(["cube", "sphere"], lines[0].Subjects!.Order());
        Assert.True(File.Exists(Path.Combine(data, SubjectCache.RelativePath)));
        Assert.Contains("subjects [##############################] 4/4", _err.ToString());

        // Again: every record has subjects now, so nothing is asked and the file is left as it is.
        byte[] written = File.ReadAllBytes(metadata);
        _out.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.Ok, Cli().Run(["subjects", "--data", data, "--model", ModelFolder]));
        Assert.Contains("4 kept, 0 from the cache, 0 asked", _out.ToString());
        Assert.Equal(written, File.ReadAllBytes(metadata));

        // --overwrite asks again, and the cache answers.
        _out.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.Ok, Cli().Run(["subjects", "--data", data, "--model", ModelFolder, "--overwrite"]));
        Assert.Contains("0 kept, 4 from the cache, 0 asked", _out.ToString());
    }

    [Theory]
    [InlineData("--batch", "0", "--batch must be positive")]
    [InlineData("--provider", "tpu", "--provider must be cuda or dml")]
    public void SubjectsVerbRefusesBadOptionsBeforeTouchingTheDataset(string option, string value, string message)
    {
        string data = TrainingRunTests.MakeDataset(_dir, captions: Captions);
        byte[] original = File.ReadAllBytes(Path.Combine(data, MetadataJsonl.FileName));
        Assert.Equal(ExitCodes.BadInput, Cli().Run(["subjects", "--data", data, "--model", ModelFolder, option, value]));
        Assert.Contains(message, _err.ToString());
        Assert.Equal(original, File.ReadAllBytes(Path.Combine(data, MetadataJsonl.FileName)));
        Assert.False(File.Exists(Path.Combine(data, DatasetSubjectsWriter.BackupName)));
        Assert.False(File.Exists(Path.Combine(data, SubjectCache.RelativePath)));
    }

    [Fact]
    public void TrainWithLlmSubjectsAsksOnceCachesBesideTheDatasetAndLeavesItsFilesAlone()
    {
        string data = TrainingRunTests.MakeDataset(_dir, captions: Captions);
        byte[] original = File.ReadAllBytes(Path.Combine(data, MetadataJsonl.FileName));
        string[] Train(string output) =>
            ["train", "--model", "toy", "--data", data, "--out", output, "--resolution", "8", "--batch-size", "2", "--lora-rank", "2",
             "--layers", "all", "--progress", "json", "--steps", "1", "--save-every", "0", "--subjects", $"llm:{ModelFolder}"];

        int code = Cli().Run(Train(Path.Combine(_dir, "first")));
        Assert.True(code == ExitCodes.Ok, _err.ToString());
        Assert.Contains("4 records without subjects, 0 from the cache, 4 asked of", _err.ToString());
        string cache = Path.Combine(data, SubjectCache.RelativePath);
        var cached = File.ReadAllLines(cache).Where(l => l.Contains("\"caption\"", StringComparison.Ordinal)).ToArray();
        Assert.Equal(Captions.Length, cached.Length);
        Assert.Equal(original, File.ReadAllBytes(Path.Combine(data, MetadataJsonl.FileName)));
        Assert.False(File.Exists(Path.Combine(data, DatasetSubjectsWriter.BackupName)));
        Assert.Equal($"llm:{ModelFolder}", JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "first", "train_config.json"))).RootElement.GetProperty("subjects").GetString());

        // A repeated run asks the model nothing: every caption is in the cache.
        _err.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.Ok, Cli().Run(Train(Path.Combine(_dir, "second"))));
        Assert.Contains("4 records without subjects, 4 from the cache, 0 asked of", _err.ToString());
    }

    [Fact]
    public void BenchSubjectsPrintsBothScoresAndTheRate()
    {
        string labelled = Path.Combine(_dir, "labelled.txt");
        File.WriteAllLines(labelled, ["# three captions", "a red cube to the left of a green sphere | cube, sphere", "two blue cones | cones", "a teddy bear on a bench | teddy bear, bench"]);
        int code = Cli().Run(["bench", "subjects", "--model", ModelFolder, "--labelled", labelled, "--rounds", "2", "--batch", "2"]);
        Assert.True(code == ExitCodes.Ok, _err.ToString());
        var values = _out.ToString().Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries)
            .Select(kv => kv.Split('=')).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1]);
        Assert.Equal("3", values["captions"]);
        var lexicon = new LexiconSubjects();
        var items = SubjectScoring.Read(labelled);
        var expected = SubjectScoring.Score(items, items.Select(i => lexicon.Of(i.Caption)).ToArray());
        Assert.Equal(expected.Recall.ToString("F4", System.Globalization.CultureInfo.InvariantCulture), values["lexicon_recall"]);
        foreach (string key in new[] { "lexicon_precision", "model_precision", "model_recall", "model_exact" })
            Assert.InRange(double.Parse(values[key], System.Globalization.CultureInfo.InvariantCulture), 0, 1);
        Assert.True(double.Parse(values["captions_per_s_median"], System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.Equal(2, values["rounds"].Split(',').Length);
    }

    [Fact]
    public void BenchSubjectsNamesAMalformedLabelledLine()
    {
        string labelled = Path.Combine(_dir, "labelled.txt");
        File.WriteAllLines(labelled, ["a red cube | cube", "no bar on this line"]);
        Assert.Equal(ExitCodes.BadInput, Cli().Run(["bench", "subjects", "--model", ModelFolder, "--labelled", labelled]));
        Assert.Contains($"{labelled}:2:", _err.ToString());
    }
}

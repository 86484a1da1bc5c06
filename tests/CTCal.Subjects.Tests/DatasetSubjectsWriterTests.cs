using CTCal.Core.Datasets;
using CTCal.Subjects;
using Xunit;

namespace CTCal.Subjects.Tests;

/// <summary>The dataset rewrite: both layouts, existing subjects kept, atomic with the original kept, resumable.</summary>
public sealed class DatasetSubjectsWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), $"ctcal-subjects-{Guid.NewGuid():N}")).FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static SubjectExtractorTests.TableModel Model() => new(c => SubjectPrompt.Answer(new LexiconSubjects().Of(c).Select(s => s.ToUpperInvariant())));

    private static MetadataLine[] Lines() =>
    [
        new("0.png", "a red cube on top of a blue sphere"),
        new("1.png", "two green triangles"),
        new("2.png", "a yellow star", ["star"]),
        new("3.png", "a purple circle", ["circle"], new Dictionary<string, string> { ["circle"] = "masks/3.png" }),
        new("4.png", "A red cube on top of a blue sphere!"),
        new("5.png", "a cat to the left of a dog"),
    ];

    private SubjectCache Cache() => SubjectCache.Open(_dir, "test-model");

    [Fact]
    public void RecordsWithoutSubjectsGetThemAndTheOriginalIsKeptBesideIt()
    {
        string metadata = Path.Combine(_dir, MetadataJsonl.FileName);
        MetadataJsonl.Write(metadata, Lines());
        byte[] original = File.ReadAllBytes(metadata);
        var model = Model();

        var report = DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(model), Cache(), overwrite: false, batchSize: 2);

        var lines = MetadataJsonl.Read(metadata).Select(l => l.Line!).ToArray();
        Assert.Equal(["cube", "sphere"], lines[0].Subjects!);
        Assert.Equal(["triangles"], lines[1].Subjects!);
        Assert.Equal(["star"], lines[2].Subjects!);            // kept
        Assert.Equal("masks/3.png", lines[3].Masks!["circle"]); // kept with its masks
        Assert.Equal(["cube", "sphere"], lines[4].Subjects!);
        Assert.Equal(["cat", "dog"], lines[5].Subjects!);
        Assert.Equal(original, File.ReadAllBytes(Path.Combine(_dir, DatasetSubjectsWriter.BackupName)));
        Assert.Equal((6, 2, 3, 3), (report.Records, report.Kept, report.Asked, report.ModelAnswers)); // the two cube captions asked once
        Assert.Equal(3, model.Captions);
        Assert.Empty(report.Fallbacks);
    }

    [Fact]
    public void OverwriteAsksAgainForRecordsWithSubjectsButNotThoseWithMasks()
    {
        string metadata = Path.Combine(_dir, MetadataJsonl.FileName);
        MetadataJsonl.Write(metadata, Lines());
        var report = DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(new SubjectExtractorTests.TableModel(_ => "[\"yellow star\"]")), Cache(), overwrite: true, batchSize: 8);
        var lines = MetadataJsonl.Read(metadata).Select(l => l.Line!).ToArray();
        Assert.Equal(["yellow star"], lines[2].Subjects!);
        Assert.Equal(["circle"], lines[3].Subjects!);
        Assert.Equal(1, report.Kept);
        Assert.Equal(3, report.Fallbacks[AnswerProblem.NotInCaption]); // "yellow star" is in one caption only
    }

    [Fact]
    public void AKilledRunLeavesTheMetadataAloneAndTheNextRunAsksOnlyTheRest()
    {
        string metadata = Path.Combine(_dir, MetadataJsonl.FileName);
        MetadataJsonl.Write(metadata, Lines());
        byte[] original = File.ReadAllBytes(metadata);
        using var cts = new CancellationTokenSource();
        var first = Model();
        Assert.Throws<OperationCanceledException>(() =>
            DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(first), Cache(), false, batchSize: 2, (done, _) => { if (done == 2) cts.Cancel(); }, cts.Token));
        Assert.Equal(original, File.ReadAllBytes(metadata));
        Assert.False(File.Exists(Path.Combine(_dir, DatasetSubjectsWriter.BackupName)));
        Assert.Equal(2, first.Captions);
        File.AppendAllText(Path.Combine(_dir, SubjectCache.RelativePath), "{\"model\": \"test-model\", \"capt"); // torn last line

        var second = Model();
        var report = DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(second), Cache(), false, batchSize: 2);
        Assert.Equal(1, second.Captions);
        Assert.Equal((3, 1), (report.FromCache, report.Asked));
        Assert.Equal(["cat", "dog"], MetadataJsonl.Read(metadata).Select(l => l.Line!).ToArray()[5].Subjects!);

        var third = Model(); // a repeated run asks nothing
        Assert.Equal(0, DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(third), Cache(), false, batchSize: 2).Asked);
        Assert.Equal(0, third.Calls);
        Assert.Equal(0, DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(Model()), SubjectCache.Open(_dir, "another-model"), false, 2).FromCache);
    }

    [Fact]
    public void AnImageAndTxtDatasetGetsAMetadataFileWithItsCaptions()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "sub"));
        File.WriteAllBytes(Path.Combine(_dir, "b.png"), []);
        File.WriteAllText(Path.Combine(_dir, "b.txt"), "a red cube\n");
        File.WriteAllBytes(Path.Combine(_dir, "sub", "a.jpg"), []);
        File.WriteAllText(Path.Combine(_dir, "sub", "a.txt"), "two green triangles");
        var report = DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(Model()), Cache(), false, 4);
        Assert.Equal("image+txt", report.Layout);
        Assert.Null(report.Backup);
        var lines = MetadataJsonl.Read(Path.Combine(_dir, MetadataJsonl.FileName)).Select(l => l.Line!).ToArray();
        Assert.Equal(("b.png", "a red cube"), (lines[0].FileName, lines[0].Text));
        Assert.Equal(["cube"], lines[0].Subjects!);
        Assert.Equal(("sub/a.jpg", "two green triangles"), (lines[1].FileName, lines[1].Text));
        Assert.Equal(["triangles"], lines[1].Subjects!);
        Assert.Equal("a red cube", File.ReadAllText(Path.Combine(_dir, "b.txt")).Trim());
    }

    [Fact]
    public void ABadMetadataLineIsNamedWithItsFileAndLine()
    {
        File.WriteAllText(Path.Combine(_dir, MetadataJsonl.FileName), "{\"file_name\": \"0.png\", \"text\": \"a cube\"}\n{\"file_name\": \"1.png\"}\n");
        var e = Assert.Throws<InvalidDataException>(() => DatasetSubjectsWriter.Run(_dir, new SubjectExtractor(Model()), Cache(), false, 4));
        Assert.Contains("metadata.jsonl:2", e.Message);
    }
}

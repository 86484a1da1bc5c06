using CTCal.Synthetic;
using CTCal.Tests;
using CTCal.Trainer.Data;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>The optional per-subject <c>masks</c> of <c>metadata.jsonl</c>: written by the synthetic world, read and checked here.</summary>
public sealed class DatasetMaskTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-masks");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void SyntheticMasksRoundTripThroughTheReaderAtImageAndLatentSides()
    {
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 3, TrainCount = 6, ImageSize = 32 });
        DatasetWriter.WriteDataset(world, _dir, withMasks: true);
        var data = ImageCaptionDataset.Open(_dir, 32, strict: true);
        Assert.Equal(world.TrainRecords.Count, data.Records.Count);
        for (int i = 0; i < data.Records.Count; i++)
        {
            var record = world.TrainRecords[i];
            Assert.Equal(record.Subjects.OrderBy(s => s), data.Records[i].Masks!.Keys.OrderBy(s => s));
            var full = data.LoadMasks(i, 32);
            var quarter = data.LoadMasks(i, 8);
            foreach (string subject in record.Subjects)
            {
                byte[] expected = SubjectMasks.Render(record, subject);
                Assert.Equal(expected.Select(b => b / 255f), full[subject]);
                // 4x4 area means: each value is the fraction of its block inside the mask.
                for (int y = 0; y < 8; y++)
                {
                    for (int x = 0; x < 8; x++)
                    {
                        int count = 0;
                        for (int dy = 0; dy < 4; dy++)
                            for (int dx = 0; dx < 4; dx++) count += expected[(4 * y + dy) * 32 + 4 * x + dx] == 255 ? 1 : 0;
                        Assert.Equal(count / 16f, quarter[subject][y * 8 + x], 5);
                    }
                }
            }
        }
    }

    [Fact]
    public void AreaResizeAveragesBlocksAndRepeatsWhenEnlarging()
    {
        float[] source = [1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        Assert.Equal([0.75f, 0f, 0f, 0.25f], MaskLoader.AreaResize(source, 4, 2));
        float[] up = MaskLoader.AreaResize([1f, 0f, 0f, 0.5f], 2, 4);
        Assert.Equal([1f, 1f, 0f, 0f, 1f, 1f, 0f, 0f, 0f, 0f, 0.5f, 0.5f, 0f, 0f, 0.5f, 0.5f], up);
        // 3 -> 2: each output covers 1.5 source pixels per axis.
        float[] three = MaskLoader.AreaResize([1, 0, 0, 0, 0, 0, 0, 0, 0], 3, 2);
        Assert.Equal(1f / 2.25f, three[0], 5);
        Assert.Equal(0f, three[3], 5);
    }

    [Fact]
    public void BadMaskEntriesAreReportedNamingLineAndKey()
    {
        DatasetTests.WritePng(Path.Combine(_dir, "a.png"), 8, 8);
        DatasetTests.WritePng(Path.Combine(_dir, "masks", "ok.png"), 8, 8);
        DatasetTests.WritePng(Path.Combine(_dir, "masks", "small.png"), 4, 4);
        File.WriteAllText(Path.Combine(_dir, "masks", "junk.png"), "not a png");
        File.WriteAllLines(Path.Combine(_dir, "metadata.jsonl"),
        [
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": {"cube": "masks/ok.png"}}""",
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": {"ball": "masks/ok.png"}}""",
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": {"cube": "../outside.png"}}""",
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": {"cube": "masks/missing.png"}}""",
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": {"cube": "masks/small.png"}}""",
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": {"cube": "masks/junk.png"}}""",
            """{"file_name": "a.png", "text": "a red cube", "masks": {"cube": "masks/ok.png"}}""",
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": ["masks/ok.png"]}""",
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"], "masks": {"cube": 3}}""",
        ]);
        var data = ImageCaptionDataset.Open(_dir, 8);
        Assert.Single(data.Records);
        Assert.NotNull(data.Records[0].Masks);
        var problems = data.Report.Problems;
        Assert.Equal(8, problems.Count);
        void Has(int line, string text) => Assert.Contains(problems, p => p.StartsWith($"metadata.jsonl:{line}: ", StringComparison.Ordinal) && p.Contains(text, StringComparison.Ordinal));
        Has(2, "masks['ball']");
        Has(3, "masks['cube']: '../outside.png'");
        Has(4, "masks['cube']: mask " + Path.Combine(_dir, "masks", "missing.png") + " does not exist");
        Has(5, "masks['cube']: mask " + Path.Combine(_dir, "masks", "small.png") + " is 4x4, its image is 8x8");
        Has(6, "masks['cube']: mask " + Path.Combine(_dir, "masks", "junk.png"));
        Has(7, "masks['cube']: 'cube' is not one of the record's subjects (none given)");
        Has(8, "'masks' must be an object");
        Has(9, "masks['cube'] must be a string");
        var strict = Assert.Throws<DatasetException>(() => ImageCaptionDataset.Open(_dir, 8, strict: true));
        Assert.Contains("metadata.jsonl:2: masks['ball']", strict.Message);
    }
}

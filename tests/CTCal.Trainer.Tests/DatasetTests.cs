using CTCal.Tests;
using CTCal.Trainer.Data;
using SkiaSharp;
using Xunit;

namespace CTCal.Trainer.Tests;

public sealed class DatasetTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-data");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Writes a PNG whose columns are red (first quarter), green (middle half), blue (last quarter).</summary>
    internal static void WritePng(string path, int width, int height)
    {
        using var bitmap = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, x < width / 4 ? SKColors.Red : x >= width - width / 4 ? SKColors.Blue : SKColors.Lime);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var stream = File.Create(path);
        Assert.True(bitmap.Encode(stream, SKEncodedImageFormat.Png, 100));
    }

    private void WriteMetadata(params string[] lines) => File.WriteAllLines(Path.Combine(_dir, "metadata.jsonl"), lines);

    [Fact]
    public void MetadataLayoutLoadsRecordsSubjectsAndCentreCrops()
    {
        WritePng(Path.Combine(_dir, "a.png"), 8, 4);
        WritePng(Path.Combine(_dir, "sub", "b.png"), 4, 4);
        WriteMetadata(
            """{"file_name": "a.png", "text": "a red cube", "subjects": ["cube"]}""",
            "",
            """{"file_name": "sub/b.png", "text": "  a blue sphere "}""");

        var dataset = ImageCaptionDataset.Open(_dir, resolution: 4);
        Assert.Equal("metadata.jsonl", dataset.Report.Layout);
        Assert.Equal(2, dataset.Records.Count);
        Assert.Equal(0, dataset.Report.Skipped);
        Assert.Equal(["cube"], dataset.Records[0].Subjects!);
        Assert.Null(dataset.Records[1].Subjects);
        Assert.Equal("a blue sphere", dataset.Records[1].Caption);

        // 8x4 -> the centre 4x4 holds only the green columns: R = -1, G = 1, B = -1 everywhere.
        float[] pixels = dataset.LoadImage(0)!;
        Assert.Equal(3 * 16, pixels.Length);
        Assert.All(pixels[..16], v => Assert.Equal(-1f, v, 3));
        Assert.All(pixels[16..32], v => Assert.Equal(1f, v, 3));
        Assert.All(pixels[32..], v => Assert.Equal(-1f, v, 3));
    }

    /// <summary>
    /// A PNG cut after its first 60 bytes (signature and IHDR intact, no image data) opens with a decoder, and
    /// <c>SKBitmap.Decode</c> used to hand back a blank bitmap for it: it was trained on with no message. It is a bad record.
    /// </summary>
    [Theory]
    [InlineData(60)]
    [InlineData(-1)] // half of the file: the first rows decode, the rest is missing
    public void TruncatedPngIsABadRecordReportedSkippedAndCountedByStrict(int keep)
    {
        WritePng(Path.Combine(_dir, "good.png"), 32, 32);
        string cut = Path.Combine(_dir, "cut.png");
        WriteNoisyPng(cut, 32, 32);
        byte[] bytes = File.ReadAllBytes(cut);
        File.WriteAllBytes(cut, bytes[..(keep > 0 ? keep : bytes.Length / 2)]);
        WriteMetadata(
            """{"file_name": "good.png", "text": "a green square"}""",
            """{"file_name": "cut.png", "text": "a red circle"}""");

        var e = Assert.Throws<InvalidDataException>(() => ImageLoader.LoadCentreCrop(cut, 16));
        Assert.Contains(cut, e.Message);
        Assert.Contains("truncated", e.Message);

        var dataset = ImageCaptionDataset.Open(_dir, resolution: 16);
        Assert.Single(dataset.Records);
        Assert.Equal(1, dataset.Report.Skipped);
        Assert.Contains(dataset.Report.Problems, p => p.StartsWith("metadata.jsonl:2: ", StringComparison.Ordinal) && p.Contains("cut.png") && p.Contains("truncated"));

        var strict = Assert.Throws<DatasetException>(() => ImageCaptionDataset.Open(_dir, resolution: 16, strict: true));
        Assert.Contains("1 bad record(s)", strict.Message);
        Assert.Contains("metadata.jsonl:2", strict.Message);
    }

    /// <summary>A PNG of seeded random pixels (so that it does not compress to a few bytes).</summary>
    private static void WriteNoisyPng(string path, int width, int height)
    {
        var random = new Random(5);
        using var bitmap = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, new SKColor((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256)));
        using var stream = File.Create(path);
        Assert.True(bitmap.Encode(stream, SKEncodedImageFormat.Png, 100));
    }

    [Fact]
    public void BadRecordsAreReportedWithFileAndLineAndSkipped()
    {
        WritePng(Path.Combine(_dir, "good.png"), 4, 4);
        WritePng(Path.Combine(_dir, "empty.png"), 4, 4);
        File.WriteAllBytes(Path.Combine(_dir, "corrupt.png"), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        WritePng(Path.Combine(Path.GetDirectoryName(_dir)!, "outside-" + Path.GetFileName(_dir) + ".png"), 4, 4);
        WriteMetadata(
            """{"file_name": "good.png", "text": "a cat"}""",
            """{"file_name": "good.png", "text": "a dog" """,
            """{"file_name": "missing.png", "text": "a bird"}""",
            """{"file_name": "corrupt.png", "text": "a fish"}""",
            """{"file_name": "empty.png", "text": "   "}""",
            $$"""{"file_name": "../outside-{{Path.GetFileName(_dir)}}.png", "text": "a cow"}""",
            """{"file_name": "good.png", "text": 5}""",
            """{"file_name": "good.png", "text": "a hen", "subjects": "hen"}""");
        try
        {
            var dataset = ImageCaptionDataset.Open(_dir, resolution: 4);
            Assert.Single(dataset.Records);
            Assert.Equal(1, dataset.Report.Usable);
            Assert.Equal(7, dataset.Report.Skipped);
            var problems = dataset.Report.Problems;
            Assert.Contains(problems, p => p.StartsWith("metadata.jsonl:2: invalid JSON"));
            Assert.Contains(problems, p => p.StartsWith("metadata.jsonl:3:") && p.Contains("missing.png") && p.Contains("does not exist"));
            Assert.Contains(problems, p => p.StartsWith("metadata.jsonl:4:") && p.Contains("corrupt.png"));
            Assert.Contains(problems, p => p.StartsWith("metadata.jsonl:5: empty caption"));
            Assert.Contains(problems, p => p.StartsWith("metadata.jsonl:6:") && p.Contains("leaves the dataset folder"));
            Assert.Contains(problems, p => p.StartsWith("metadata.jsonl:7:") && p.Contains("'text'"));
            Assert.Contains(problems, p => p.StartsWith("metadata.jsonl:8:") && p.Contains("'subjects'"));
        }
        finally
        {
            File.Delete(Path.Combine(Path.GetDirectoryName(_dir)!, "outside-" + Path.GetFileName(_dir) + ".png"));
        }
    }

    [Fact]
    public void StrictModeFailsAndListsEveryProblem()
    {
        WritePng(Path.Combine(_dir, "good.png"), 4, 4);
        WriteMetadata(
            """{"file_name": "good.png", "text": "a cat"}""",
            "not json",
            """{"file_name": "missing.png", "text": "a bird"}""");
        var e = Assert.Throws<DatasetException>(() => ImageCaptionDataset.Open(_dir, resolution: 4, strict: true));
        Assert.Contains("2 bad record(s)", e.Message);
        Assert.Contains("metadata.jsonl:2", e.Message);
        Assert.Contains("metadata.jsonl:3", e.Message);
    }

    [Fact]
    public void NoUsableRecordFailsEvenWithoutStrict()
    {
        WriteMetadata("""{"file_name": "missing.png", "text": "a bird"}""");
        var e = Assert.Throws<DatasetException>(() => ImageCaptionDataset.Open(_dir, resolution: 4));
        Assert.Contains("no usable records", e.Message);
        Assert.Contains("metadata.jsonl:1", e.Message);
    }

    [Fact]
    public void ImageFolderWithCaptionFiles()
    {
        WritePng(Path.Combine(_dir, "one.png"), 6, 6);
        File.WriteAllText(Path.Combine(_dir, "one.txt"), "three green triangles\n");
        WritePng(Path.Combine(_dir, "two.png"), 6, 6);
        WritePng(Path.Combine(_dir, "three.png"), 6, 6);
        File.WriteAllText(Path.Combine(_dir, "three.txt"), "");
        File.WriteAllText(Path.Combine(_dir, "orphan.txt"), "a caption");

        var dataset = ImageCaptionDataset.Open(_dir, resolution: 4);
        Assert.Equal("image+txt", dataset.Report.Layout);
        var record = Assert.Single(dataset.Records);
        Assert.Equal("three green triangles", record.Caption);
        Assert.Equal(3, dataset.Report.Skipped);
        Assert.Contains(dataset.Report.Problems, p => p.StartsWith("two.png: no caption file"));
        Assert.Contains(dataset.Report.Problems, p => p.StartsWith("three.txt:1: empty caption"));
        Assert.Contains(dataset.Report.Problems, p => p.StartsWith("orphan.txt: caption without an image"));
        Assert.Equal(48, dataset.LoadImage(0)!.Length);
    }

    [Fact]
    public void ImageThatFailsToDecodeLaterIsReportedOrFailsUnderStrict()
    {
        WritePng(Path.Combine(_dir, "a.png"), 4, 4);
        WriteMetadata("""{"file_name": "a.png", "text": "a cat"}""");
        var lenient = ImageCaptionDataset.Open(_dir, resolution: 4);
        var strict = ImageCaptionDataset.Open(_dir, resolution: 4, strict: true);
        File.WriteAllBytes(Path.Combine(_dir, "a.png"), [0, 1, 2]); // replaced after the scan
        Assert.Null(lenient.LoadImage(0));
        Assert.Contains(lenient.Report.Problems, p => p.StartsWith("metadata.jsonl:1:") && p.Contains("a.png"));
        Assert.Throws<DatasetException>(() => strict.LoadImage(0));
    }

    [Fact]
    public void DataOrderIsAPermutationPerEpochAndResumable()
    {
        var order = new DataOrder(5, seed: 42);
        var first = Enumerable.Range(0, 5).Select(_ => order.Next()).ToArray();
        Assert.Equal([0, 1, 2, 3, 4], first.Order());
        var rest = Enumerable.Range(0, 7).Select(_ => order.Next()).ToArray();

        var resumed = new DataOrder(5, seed: 42, epoch: 0, position: 5);
        Assert.Equal(rest, Enumerable.Range(0, 7).Select(_ => resumed.Next()).ToArray());
        var again = new DataOrder(5, seed: 42, epoch: 1, position: 2);
        Assert.Equal(rest[2..], Enumerable.Range(0, 5).Select(_ => again.Next()).ToArray());
        Assert.NotEqual(first, new DataOrder(5, seed: 43).Let(o => Enumerable.Range(0, 5).Select(_ => o.Next()).ToArray()));
    }
}

internal static class Functional
{
    public static TResult Let<T, TResult>(this T value, Func<T, TResult> f) => f(value);
}

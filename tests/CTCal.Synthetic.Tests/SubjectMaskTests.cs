using System.Text.Json;
using CTCal.Tests;
using Xunit;

namespace CTCal.Synthetic.Tests;

/// <summary>Per-subject masks: what they cover, and how the dataset writer stores them.</summary>
public sealed class SubjectMaskTests
{
    [Theory]
    [InlineData(ShapeKind.Circle, 30.3, 28.7, 25.0)]
    [InlineData(ShapeKind.Square, 21.5, 40.2, 19.0)]
    [InlineData(ShapeKind.Triangle, 33.1, 31.9, 30.0)]
    [InlineData(ShapeKind.Star, 32.0, 32.0, 40.0)]
    public void MaskCoversExactlyThePixelsTheRenderShowsAsTheObject(ShapeKind shape, double x, double y, double size)
    {
        var obj = new SceneObject(ShapeColor.Blue, shape, x, y, size);
        var image = Renderer.Render(new Scene(64, 64, [obj]));
        byte[] mask = Renderer.RenderMask(64, 64, [obj]);
        var bg = Palette.Background;
        var c = Palette.ToRgb(obj.Color);
        double[] d = [c.R - bg.R, c.G - bg.G, c.B - bg.B];
        double norm = d.Sum(v => v * v);
        int inside = 0, edge = 0;
        for (int py = 0; py < 64; py++)
        {
            for (int px = 0; px < 64; px++)
            {
                var p = image[px, py];
                // Blend weight of the pixel on the background -> object colour line (the anti-aliased coverage).
                double alpha = ((p.R - bg.R) * d[0] + (p.G - bg.G) * d[1] + (p.B - bg.B) * d[2]) / norm;
                byte m = mask[py * 64 + px];
                Assert.True(m is 0 or 255, $"mask value {m} at ({px}, {py})");
                if (alpha > 0.5 + 2.0 / 255) Assert.True(m == 255, $"({px}, {py}) is {alpha:F3} object in the render but outside the mask");
                else if (alpha < 0.5 - 2.0 / 255) Assert.True(m == 0, $"({px}, {py}) is {alpha:F3} object in the render but inside the mask");
                else edge++;
                if (m == 255) inside++;
            }
        }
        Assert.True(inside > 50, $"{inside} mask pixels");
        // Pixels within rounding of half coverage (an edge on a pixel's centre line) may go either way; they are few.
        Assert.True(edge * 8 < inside, $"{edge} pixels at half coverage for {inside} inside");
    }

    [Fact]
    public void ASubjectNamingSeveralObjectsHasTheirUnion()
    {
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 5, TrainCount = 60, CategoryWeights = (0, 1, 0) });
        var record = world.TrainRecords.First(r => r.Spec.Objects[0].Count == 3);
        string subject = Assert.Single(record.Subjects);
        var objects = SubjectMasks.ObjectsOf(record, subject);
        Assert.Equal(3, objects.Count);
        byte[] union = SubjectMasks.Render(record, subject);
        byte[] expected = new byte[union.Length];
        foreach (var o in objects)
        {
            byte[] one = Renderer.RenderMask(record.Scene.Width, record.Scene.Height, [o]);
            Assert.Contains(one, v => v == 255);
            for (int i = 0; i < one.Length; i++) expected[i] |= one[i];
        }
        Assert.Equal(expected, union);
        Assert.Throws<ArgumentException>(() => SubjectMasks.ObjectsOf(record, "dog"));
    }

    [Fact]
    public void DatasetWithMasksWritesOneGrayscalePngPerSubjectNamedInItsLine()
    {
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 3, TrainCount = 8, EvalPromptsPerCategory = 2 });
        string dir = TestPaths.NewTempDir();
        try
        {
            DatasetWriter.WriteDataset(world, dir, withMasks: true);
            var lines = DatasetWriter.ReadMetadata(Path.Combine(dir, DatasetWriter.MetadataFileName));
            Assert.Equal(world.TrainRecords.Count, lines.Count);
            for (int i = 0; i < lines.Count; i++)
            {
                var record = world.TrainRecords[i];
                Assert.NotNull(lines[i].Masks);
                Assert.Equal(record.Subjects.OrderBy(s => s), lines[i].Masks!.Keys.OrderBy(s => s));
                foreach (var (subject, relative) in lines[i].Masks!)
                {
                    Assert.StartsWith("masks/", relative);
                    var png = RgbaImage.Load(Path.Combine(dir, relative));
                    Assert.Equal((record.Scene.Width, record.Scene.Height), (png.Width, png.Height));
                    byte[] expected = SubjectMasks.Render(record, subject);
                    for (int p = 0; p < expected.Length; p++) Assert.Equal(expected[p], png.Pixels[p * 4]);
                }
            }
            Assert.Empty(Directory.GetFiles(dir, "*.tmp-*", SearchOption.AllDirectories));

            // Without the option, lines keep their three keys and no mask folder appears.
            string plain = TestPaths.NewTempDir();
            try
            {
                DatasetWriter.WriteDataset(world, plain);
                Assert.False(Directory.Exists(Path.Combine(plain, SubjectMasks.Folder)));
                using var doc = JsonDocument.Parse(File.ReadLines(Path.Combine(plain, DatasetWriter.MetadataFileName)).First());
                Assert.False(doc.RootElement.TryGetProperty("masks", out _));
            }
            finally
            {
                Directory.Delete(plain, recursive: true);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void MaskKeyThatIsNotASubjectIsRefusedNamingLineAndKey()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "metadata.jsonl");
            File.WriteAllText(path, "{\"file_name\": \"a.png\", \"text\": \"a red circle\", \"subjects\": [\"circle\"], \"masks\": {\"circle\": \"masks/a_circle.png\"}}\n"
                + "{\"file_name\": \"b.png\", \"text\": \"a red circle\", \"subjects\": [\"circle\"], \"masks\": {\"square\": \"masks/b_square.png\"}}\n");
            var e = Assert.Throws<InvalidDataException>(() => DatasetWriter.ReadMetadata(path));
            Assert.Contains(path + ":2", e.Message);
            Assert.Contains("masks['square']", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

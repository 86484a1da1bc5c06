using System.Text.Json;
using CTCal.Tests;
using Xunit;

namespace CTCal.Synthetic.Tests;

/// <summary>The diffusers image-folder files and the evaluation prompt file.</summary>
public sealed class DatasetWriterTests
{
    private static readonly SyntheticWorld World = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 3, TrainCount = 12, EvalPromptsPerCategory = 6 });

    [Fact]
    public void MetadataRoundTripsAsJsonLinesWithSubjectsInTheText()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            DatasetWriter.WriteDataset(World, dir);
            string[] lines = File.ReadAllLines(Path.Combine(dir, DatasetWriter.MetadataFileName));
            Assert.Equal(World.TrainRecords.Count, lines.Length);
            for (int i = 0; i < lines.Length; i++)
            {
                using var doc = JsonDocument.Parse(lines[i]);
                var props = doc.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
                Assert.Equal(["file_name", "text", "subjects"], props);
                var record = World.TrainRecords[i];
                Assert.Equal(record.FileName, doc.RootElement.GetProperty("file_name").GetString());
                string text = doc.RootElement.GetProperty("text").GetString()!;
                Assert.Equal(record.Caption, text);
                var subjects = doc.RootElement.GetProperty("subjects").EnumerateArray().Select(s => s.GetString()!).ToArray();
                Assert.NotEmpty(subjects);
                Assert.All(subjects, s => Assert.Contains(s, text.Split(' ')));
                Assert.Equal(record.Render().Pixels, RgbaImage.Load(Path.Combine(dir, record.FileName)).Pixels);
            }
            var read = DatasetWriter.ReadMetadata(Path.Combine(dir, DatasetWriter.MetadataFileName));
            Assert.Equal(World.TrainRecords.Select(r => (r.FileName, r.Caption, string.Join(",", r.Subjects))),
                read.Select(m => (m.FileName, m.Text, string.Join(",", m.Subjects!))));
            using var world = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, DatasetWriter.WorldFileName)));
            Assert.Equal(3ul, world.RootElement.GetProperty("seed").GetUInt64());
            Assert.Equal(4, world.RootElement.GetProperty("heldOutPairs").GetArrayLength());
            Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void EvalPromptsRoundTrip()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "eval", "prompts.json");
            DatasetWriter.WriteEvalPrompts(World, path);
            var read = DatasetWriter.ReadEvalPrompts(path);
            Assert.Equal(World.EvalPrompts.Count, read.Count);
            for (int i = 0; i < read.Count; i++)
            {
                var (a, b) = (World.EvalPrompts[i], read[i]);
                Assert.Equal(a.Prompt, b.Prompt);
                Assert.Equal(a.Category, b.Category);
                Assert.Equal(a.Spec, b.Spec);
                Assert.Equal(a.HeldOutPair, b.HeldOutPair);
                Assert.Equal(a.Subjects, b.Subjects);
            }
            string json = File.ReadAllText(path);
            Assert.Contains("\"category\": \"binding\"", json);
            Assert.Contains("\"heldOutPair\": true", json);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void BadMetadataIsRefusedNamingFileAndLine()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "metadata.jsonl");
            File.WriteAllText(path, "{\"file_name\": \"a.png\", \"text\": \"a red circle\", \"subjects\": [\"circle\"]}\n{\"file_name\": \"../b.png\", \"text\": \"x\", \"subjects\": []}\n");
            var e = Assert.Throws<InvalidDataException>(() => DatasetWriter.ReadMetadata(path));
            Assert.Contains(path + ":2", e.Message);
            Assert.Contains("../b.png", e.Message);
            File.WriteAllText(path, "{\"file_name\": \"a.png\", \"subjects\": []}\n");
            e = Assert.Throws<InvalidDataException>(() => DatasetWriter.ReadMetadata(path));
            Assert.Contains("'text'", e.Message);
            File.WriteAllText(path, "not json\n");
            Assert.Throws<InvalidDataException>(() => DatasetWriter.ReadMetadata(path));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void EvalPromptThatContradictsItsSpecIsRefused()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "prompts.json");
            DatasetWriter.WriteEvalPrompts(World, path);
            string original = World.EvalPrompts[0].Prompt;
            string tampered = original.Contains("red") ? original.Replace("red", "green") : original.Replace(original.Split(' ')[1], "red");
            File.WriteAllText(path, File.ReadAllText(path).Replace($"\"{original}\"", $"\"{tampered}\""));
            var e = Assert.Throws<InvalidDataException>(() => DatasetWriter.ReadEvalPrompts(path));
            Assert.Contains("prompts[0]", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

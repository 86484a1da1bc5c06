using CTCal.Core.Datasets;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>The one reader and writer of metadata.jsonl.</summary>
public sealed class MetadataJsonlTests
{
    [Fact]
    public void LinesRoundTripThroughTheFile()
    {
        string path = Path.Combine(TestPaths.NewTempDir("ctcal-metadata"), MetadataJsonl.FileName);
        MetadataLine[] lines =
        [
            new("00000.png", "a red circle and a blue square", ["circle", "square"], new Dictionary<string, string> { ["circle"] = "masks/00000_circle.png" }),
            new("sub/é.png", "un \"chat\"\n", null, null),
        ];
        MetadataJsonl.Write(path, lines);
        Assert.Equal("""{"file_name":"00000.png","text":"a red circle and a blue square","subjects":["circle","square"],"masks":{"circle":"masks/00000_circle.png"}}""",
            File.ReadLines(path).First());
        var read = MetadataJsonl.Read(path).ToList();
        Assert.All(read, r => Assert.Null(r.Problem));
        Assert.Equal([1, 2], read.Select(r => r.Number));
        Assert.Equal(lines[0] with { Subjects = null, Masks = null }, read[0].Line! with { Subjects = null, Masks = null });
        Assert.Equal(lines[0].Subjects, read[0].Line!.Subjects);
        Assert.Equal(lines[0].Masks, read[0].Line!.Masks);
        Assert.Equal(lines[1], read[1].Line);
    }

    [Theory]
    [InlineData("[1]", "expected a JSON object")]
    [InlineData("{", "invalid JSON (")]
    [InlineData("""{"text": "a cat"}""", "missing or non-string 'file_name'")]
    [InlineData("""{"file_name": "a.png"}""", "missing or non-string 'text' for 'a.png'")]
    [InlineData("""{"file_name": "a.png", "text": "  "}""", "empty caption ('text') for 'a.png'")]
    [InlineData("""{"file_name": "a.png", "text": "a cat", "subjects": "cat"}""", "'subjects' must be an array of strings")]
    [InlineData("""{"file_name": "a.png", "text": "a cat", "subjects": ["cat"], "masks": ["m.png"]}""", "'masks' must be an object")]
    [InlineData("""{"file_name": "a.png", "text": "a cat", "subjects": ["cat"], "masks": {"cat": 1}}""", "masks['cat'] must be a string")]
    [InlineData("""{"file_name": "a.png", "text": "a cat", "subjects": ["cat"], "masks": {"dog": "d.png"}}""", "masks['dog']: 'dog' is not one of the record's subjects (cat)")]
    public void ABadLineIsRefusedNamingTheField(string json, string problem)
    {
        Assert.Null(MetadataJsonl.Parse(json, out string? message));
        Assert.StartsWith(problem, message);
    }

    [Fact]
    public void SubjectsAreTrimmedAndEmptyOnesDropped()
    {
        var line = MetadataJsonl.Parse("""{"file_name": "a.png", "text": "a cat", "subjects": [" cat ", "", "  "]}""", out _);
        Assert.Equal(["cat"], line!.Subjects);
    }
}

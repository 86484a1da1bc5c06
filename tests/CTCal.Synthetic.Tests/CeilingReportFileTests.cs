using CTCal.Tests;
using Xunit;

namespace CTCal.Synthetic.Tests;

/// <summary>ceiling.json: written and read by the one owner of the format.</summary>
public sealed class CeilingReportFileTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-ceiling-file");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ReportRoundTripsAndAMalformedFileIsNamed()
    {
        var report = new CeilingReport("vae", [new CeilingCategory(PromptCategory.Counting, 270, 270, 264)], new CeilingCategory(PromptCategory.Binding, 270, 270, 264),
            [new CeilingFailure(3, "eval", "two red stars", PromptCategory.Counting, true, ["red star"], ["red square"])], 12.5);

        CeilingReportFile.Write(_dir, "ctcal-train base ceiling", report);
        var read = CeilingReportFile.Read(Path.Combine(_dir, CeilingReportFile.FileName));

        Assert.Equal("vae", read.Vae);
        Assert.Equal(report.Categories, read.Categories);
        Assert.Equal(report.Overall, read.Overall);
        Assert.Equal(264 / 270.0, read.Categories[0].RoundTrip, 12);
        Assert.Equal(["red square"], read.Failures[0].Detected);
        Assert.Contains("\"command\": \"ctcal-train base ceiling\"", File.ReadAllText(Path.Combine(_dir, CeilingReportFile.FileName)), StringComparison.Ordinal);

        string bad = Path.Combine(_dir, "bad.json");
        File.WriteAllText(bad, "{ not json");
        var e = Assert.Throws<InvalidDataException>(() => CeilingReportFile.Read(bad));
        Assert.Contains(bad, e.Message, StringComparison.Ordinal);
    }
}

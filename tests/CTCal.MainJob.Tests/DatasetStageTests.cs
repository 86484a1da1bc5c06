using System.Text.Json;
using CTCal.Synthetic;
using CTCal.Tests;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>Stage a writes the dataset with per-subject masks and reuses a folder only when it has them.</summary>
public sealed class DatasetStageTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-main-data");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void DatasetCarriesMasksAndAFolderWithoutThemIsRewritten()
    {
        var world = new SyntheticWorldOptions { Seed = 2, TrainCount = 5, EvalPromptsPerCategory = 2 };
        string folder = Path.Combine(_dir, "data");
        Assert.False(DatasetStage.Ensure(folder, world, CancellationToken.None));
        using (var first = JsonDocument.Parse(File.ReadLines(Path.Combine(folder, DatasetWriter.MetadataFileName)).First()))
        {
            string mask = first.RootElement.GetProperty("masks").EnumerateObject().First().Value.GetString()!;
            Assert.True(File.Exists(Path.Combine(folder, mask)));
        }
        Assert.True(DatasetStage.Ensure(folder, world, CancellationToken.None));

        // A dataset written without masks (an older run's) is not reused.
        Directory.Delete(folder, recursive: true);
        var created = SyntheticWorld.Create(world);
        DatasetWriter.WriteDataset(created, folder);
        DatasetWriter.WriteEvalPrompts(created, Path.Combine(folder, DatasetStage.EvalPromptsFileName));
        Assert.False(DatasetStage.Matches(folder, world));
        Assert.False(DatasetStage.Ensure(folder, world, CancellationToken.None));
        Assert.True(DatasetStage.Matches(folder, world));
    }
}

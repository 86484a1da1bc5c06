using Xunit;

namespace CTCal.MainJob.Tests;

public sealed class SweepTests
{
    [Fact]
    public void VanillaGetsEveryLearningRateAndCtcalEveryLearningRateAndWeight()
    {
        var jobs = Sweep.Jobs(7, [1e-4, 3e-4], [0.3, 1]);
        Assert.Equal(
            ["vanilla-lr0.0001", "ctcal-lr0.0001-w0.3", "ctcal-lr0.0001-w1", "vanilla-lr0.0003", "ctcal-lr0.0003-w0.3", "ctcal-lr0.0003-w1"],
            jobs.Select(j => j.ModelId));
        Assert.All(jobs, j => Assert.Equal(7, j.Seed));
        Assert.Equal(2, jobs.Count(j => j.Method == FineTuneStage.Vanilla));
        Assert.Equal(0.3, jobs[4].CtcalWeight);
        Assert.Equal(3e-4, jobs[4].LearningRate);
    }

    [Fact]
    public void TableIsSortedByOverallWithBothMethods()
    {
        var r = new SweepResults(new MainJobRecipe { Steps = 50 }, [1e-4], [1], [
            new SweepPoint("base", "base", 0, null, new Dictionary<string, double> { ["all.overall"] = 0.4 }, null, 0),
            new SweepPoint("vanilla-lr0.0001", "vanilla", 1e-4, null, new Dictionary<string, double> { ["all.overall"] = 0.5 }, 0.1, 10),
            new SweepPoint("ctcal-lr0.0001-w1", "ctcal", 1e-4, 1, new Dictionary<string, double> { ["all.overall"] = 0.6, ["heldout.overall"] = 0.25 }, 0.12, 20),
        ], 30);
        string md = Sweep.Markdown(r);
        var rows = md.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal) && !l.StartsWith("| model", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, rows.Count);
        Assert.StartsWith("| ctcal-lr0.0001-w1 | ctcal | 0.0001 | 1 | 60.0% |", rows[0]);
        Assert.Contains("| 25.0% | 0.1200 | 20 s |", rows[0]);
        Assert.StartsWith("| vanilla-lr0.0001 | vanilla | 0.0001 | – | 50.0% |", rows[1]);
        Assert.StartsWith("| base | base | – | – | 40.0% |", rows[2]);
    }
}

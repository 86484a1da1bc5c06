using CTCal.Tests;
using Spectre.Console;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>
/// The whole chain on the shipped base model (assets/base-model), as small as it goes: a 32-image dataset, 2 fine-tune
/// steps of batch 4 per method on one seed, one prompt per category, one image seed, 4 sampler steps.
/// </summary>
public sealed class EndToEndTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-main-e2e");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task TheWholeChainRunsAndWritesItsReports()
    {
        string baseModel = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        Assert.True(File.Exists(Path.Combine(baseModel, "model_index.json")), $"the shipped base model is missing: {baseModel}");
        var options = new MainJobOptions
        {
            Recipe = new MainJobRecipe
            {
                Steps = 2, BatchSize = 4, Warmup = 0, Seeds = [1], ImageSeeds = 1, PromptsPerCategory = 1, SamplingSteps = 4, DatasetCount = 32,
            },
            OutputFolder = Path.Combine(_dir, "out"),
            BaseModel = baseModel,
            Quick = true,
            Threads = 1,
            Parallel = 2,
        };
        var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Ansi = AnsiSupport.No });

        var results = await new MainJobRunner(console).RunAsync(options, CancellationToken.None);

        Assert.Equal(["base", "vanilla-s1", "ctcal-s1"], results.Models.Select(m => m.Model));
        Assert.All(results.Models, m => Assert.Equal(3, m.Images.Count));
        Assert.All(results.Models.SelectMany(m => m.Images), i => Assert.True(File.Exists(i.File), i.File));
        Assert.All(results.Models, m => Assert.InRange(m.Metrics["all.overall"], 0, 1));
        Assert.Equal(2, results.FineTunes.Count);
        Assert.All(results.FineTunes, f => Assert.Equal([1L, 2L], f.Loss.Select(p => p.Step)));
        // Same seed, data and steps: both methods see the same diffusion loss at step 1 (LoRA starts as a no-op).
        Assert.Equal(results.FineTunes[0].Loss[0].Diffusion!.Value, results.FineTunes[1].Loss[0].Diffusion!.Value, 5);
        Assert.Equal(["base", "vanilla", "ctcal"], results.Summaries.Select(s => s.Method));
        Assert.Contains(results.Stages, s => s.Stage == "fine-tune");

        string o = options.OutputFolder;
        foreach (string file in new[] { "report.md", "report.html", "results.json", "host/plugins.json", "data/world.json", "data/eval_prompts.json" })
        {
            Assert.True(File.Exists(Path.Combine(o, file)), $"{file} missing");
        }

        Assert.True(Directory.Exists(Path.Combine(o, "host", "models", "ctcal-s1")));
        NLog.LogManager.Flush();
        Assert.Contains("Trainer started", File.ReadAllText(Path.Combine(o, "main.log"))); // the run's own log (RunLog), plugin lines included
        Assert.Contains("SMOKE RUN", File.ReadAllText(Path.Combine(o, "report.md")));
        Assert.Contains("CTCal vs vanilla", output.ToString());
    }
}

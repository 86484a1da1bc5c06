using System.Text.Json;
using System.Text.RegularExpressions;
using CTCal.Synthetic;
using CTCal.Tests;
using Xunit;

namespace CTCal.MainJob.Tests;

public sealed class ReportWriterTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-main-report");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Png(string model, int prompt, long seed, byte shade)
    {
        var pixels = new byte[16 * 16 * 4];
        for (int i = 0; i < pixels.Length; i += 4)
        {
            pixels[i] = shade;
            pixels[i + 1] = 40;
            pixels[i + 2] = 200;
            pixels[i + 3] = 255;
        }

        string file = Path.Combine(_dir, "images", model, GenerateAndScoreStage.ImageFileName(prompt, seed));
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        File.WriteAllBytes(file, new RgbaImage(16, 16, pixels).EncodePng());
        return file;
    }

    private RunResults Results(bool quick)
    {
        var recipe = new MainJobRecipe { Seeds = [1, 2], ImageSeeds = 2, Steps = 3, LearningRate = 2e-4 };
        var prompts = new[]
        {
            new PromptInfo(0, "a red circle and a blue square", "binding", true),
            new PromptInfo(5, "two yellow stars", "counting", false),
        };
        var models = new List<ModelScores>();
        byte shade = 10;
        foreach (string model in new[] { "base", "vanilla-s1", "ctcal-s1", "vanilla-s2", "ctcal-s2" })
        {
            var images = prompts.SelectMany(p => new[] { 1000L, 1001L }.Select(seed =>
                new ImageResult(model, p.Index, seed, Png(model, p.Index, seed, shade += 20), new ImageScore(1, null, null, model.StartsWith("ctcal", StringComparison.Ordinal) ? 1 : 0, [])))).ToList();
            var metrics = new Dictionary<string, double>
            {
                ["all.overall"] = model.StartsWith("ctcal", StringComparison.Ordinal) ? 0.75 : 0.25,
                ["all.binding"] = 0.5,
                ["heldout.overall"] = 0.125,
                ["seen.overall"] = 0.375,
                [Metrics.DiversityLayout] = 0.1,
            };
            models.Add(new ModelScores(model, metrics, images));
        }

        var summaries = new List<MethodSummary>
        {
            MethodSummary.Of("base", models.Take(1).ToList()),
            MethodSummary.Of("vanilla", models.Where(m => m.Model.StartsWith("vanilla", StringComparison.Ordinal)).ToList()),
            MethodSummary.Of("ctcal", models.Where(m => m.Model.StartsWith("ctcal", StringComparison.Ordinal)).ToList()),
        };
        var jobs = FineTuneStage.MainJobs(recipe);
        var fineTunes = jobs.Select(j => new FineTuneOutcome(j, [new LossPoint(1, 0.3, 0.2), new LossPoint(2, 0.25, 0.18), new LossPoint(3, 0.2, 0.15)], 12.5, "w.safetensors")).ToList();
        return new RunResults(quick ? "quick (smoke run)" : "main", quick, new DateTime(2026, 11, 26, 12, 0, 0, DateTimeKind.Utc), recipe,
            new RunConfiguration("/base", false, 1, 2000, 1, 2, ["--layers all"], jobs.ToDictionary(j => j.ModelId, j => FineTuneStage.TrainerJob(j, recipe, 1, [], "/base", "/data", "/runs/" + j.ModelId))),
            new MachineInfo("linux", ".NET", "cpu", 2, 1.5, 1 << 30),
            [new StageTime("dataset", 1.5), new StageTime("fine-tune", 130)], 140,
            prompts, summaries, [Verdict.Of(summaries[2], summaries[1])], models, fineTunes);
    }

    [Fact]
    public void MarkdownHasTheTablesVerdictConfigurationAndExistingImages()
    {
        var results = Results(quick: false);
        ReportWriter.WriteAll(results, _dir);
        string md = File.ReadAllText(Path.Combine(_dir, "report.md"));

        Assert.Contains("| model | seeds | overall | binding | counting | spatial | seen overall | held-out overall | layout diversity |", md);
        Assert.Contains("| vanilla | 2 | 25.0% ± 0.0 (25.0%–25.0%) |", md);
        Assert.Contains("| ctcal | 2 | 75.0% ± 0.0 (75.0%–75.0%) |", md);
        Assert.Contains("| base | 1 | 25.0% | 50.0% | – | – | 37.5% | 12.5% | 0.100 |", md);
        Assert.Contains("CTCal beats vanilla on all.overall: 75.0% vs 25.0%", md);
        Assert.Contains("| vanilla-s2 |", md);
        Assert.Contains("steps 3, lr 0.0002", md);
        Assert.Contains("`ctcal-s1`: `--method ctcal --steps ", md);
        Assert.Matches("`ctcal-s1`: `[^`]* --lr 0.0002 [^`]*--pixel-weight", md);
        Assert.Contains("| fine-tune | 2.2 min (130 s) |", md);
        Assert.DoesNotContain("SMOKE", md);

        // Every image the markdown links exists; the grids are there.
        var links = Regex.Matches(md, @"!\[[^\]]*\]\(([^)]+)\)").Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("grids/binding.png", links);
        Assert.Contains("images/ctcal-s1/p005-s1001.png", links);
        Assert.All(links, l => Assert.True(File.Exists(Path.Combine(_dir, l)), $"{l} is linked but missing"));
        var grid = RgbaImage.Load(Path.Combine(_dir, "grids", "counting.png"));
        Assert.Equal((3 * 18) + 2, grid.Width);  // base | vanilla-s1 | ctcal-s1, 16 px + 2 px gaps
        Assert.Equal((2 * 18) + 2, grid.Height); // one prompt x two image seeds
    }

    [Fact]
    public void HtmlIsSelfContained()
    {
        ReportWriter.WriteAll(Results(quick: true), _dir);
        string html = File.ReadAllText(Path.Combine(_dir, "report.html"));
        Assert.Contains("SMOKE RUN", html);
        Assert.Contains("<table>", html);
        Assert.Contains("<td>ctcal</td><td>2</td><td>75.0% ± 0.0 (75.0%–75.0%)</td>", html);
        Assert.Contains("<svg", html);
        Assert.Contains("<polyline", html);
        var sources = Regex.Matches(html, "src=\"([^\"]*)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(2 * 2 * 3, sources.Count); // 2 prompts x 2 seeds x (base, vanilla-s1, ctcal-s1)
        Assert.All(sources, s => Assert.StartsWith("data:image/png;base64,", s));
        Assert.DoesNotContain("href=\"http", html);
        Assert.DoesNotContain("<link", html);
        Assert.DoesNotContain("<script", html);
    }

    [Fact]
    public void ResultsJsonHasTheRecipeAndTheSummaries()
    {
        ReportWriter.WriteAll(Results(quick: false), _dir);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "results.json")));
        var root = doc.RootElement;
        Assert.Equal(3, root.GetProperty("recipe").GetProperty("steps").GetInt32());
        Assert.Equal(0.0002, root.GetProperty("recipe").GetProperty("learningRate").GetDouble());
        var ctcal = root.GetProperty("summaries")[2];
        Assert.Equal("ctcal", ctcal.GetProperty("method").GetString());
        Assert.Equal(0.75, ctcal.GetProperty("metrics").GetProperty("all.overall").GetProperty("mean").GetDouble());
        Assert.Equal(4, root.GetProperty("fineTunes").GetArrayLength()); // 2 seeds x 2 methods
        Assert.Equal(5, root.GetProperty("models").GetArrayLength());
    }

    [Fact]
    public void LossSvgHasOneLinePerRun()
    {
        var recipe = new MainJobRecipe { Seeds = [1] };
        var runs = FineTuneStage.MainJobs(recipe).Select(j => new FineTuneOutcome(j, [new LossPoint(1, 1, null), new LossPoint(2, 0.5, null)], 1, "x")).ToList();
        string svg = ReportWriter.LossSvg(runs, p => p.Loss, "loss");
        Assert.Equal(2, Regex.Matches(svg, "<polyline").Count);
        Assert.Contains("#c0392b", svg); // CTCal red
        Assert.Contains("#2471a3", svg); // vanilla blue
        Assert.Contains("no data", ReportWriter.LossSvg(runs, p => p.Diffusion, "diffusion"));
    }
}

using CTCal.Contracts;
using CTCal.Tests;
using Xunit;

namespace CTCal.Contracts.Tests;

public sealed class FineTuneJobTests
{
    private static FineTuneJob Runnable() => new() { Model = "/m", Data = "/d", Out = "/o" };

    [Fact]
    public void KeysAreTheTrainersOptionNames()
    {
        Assert.Equal("lora-rank", FineTuneJobJson.KeyOf(nameof(FineTuneJob.LoraRank)));
        Assert.Equal("teacher-t", FineTuneJobJson.KeyOf(nameof(FineTuneJob.TeacherT)));
        Assert.Equal("max-nan-steps", FineTuneJobJson.KeyOf(nameof(FineTuneJob.MaxNanSteps)));
        Assert.Contains("validation-prompts", FineTuneJobJson.Keys);
        Assert.Equal(FineTuneJobJson.Keys.Count, FineTuneJobJson.Keys.Distinct().Count());
    }

    [Fact]
    public void EveryValueRoundTripsThroughTheFile()
    {
        var job = Runnable() with
        {
            Method = "vanilla", LoraRank = 8, LoraAlpha = 4.5, LoraFormat = "kohya", TrainTextEncoder = true, Steps = 7, Lr = 3e-5,
            LrSchedule = "cosine", EmaDecay = 0.999, MinSnrGamma = 5, Seed = 1L << 40, ValidationPrompts = ["a cat", "a \"dog\""],
            PixelWeight = 0.1 + 0.2, MapResolution = 16, Layers = ["down_blocks.0.attentions.0.transformer_blocks.0.attn2"], Progress = "json",
        };
        var back = FineTuneJobJson.Parse(FineTuneJobJson.ToJson(job), "job.json");
        Assert.Equal(job with { ValidationPrompts = back.ValidationPrompts, Layers = back.Layers }, back);
        Assert.Equal(job.ValidationPrompts, back.ValidationPrompts);
        Assert.Equal(job.Layers, back.Layers);
        Assert.Equal(0.30000000000000004, back.PixelWeight); // doubles are written to round-trip exactly

        // Nulls are left out of the file, and a file with only some keys has the defaults for the rest.
        Assert.DoesNotContain("lora-alpha", FineTuneJobJson.ToJson(Runnable()));
        Assert.Equal(FineTuneJob.Defaults with { Steps = 3 }, FineTuneJobJson.Parse("""{"steps": 3}""", "x"));
    }

    [Theory]
    [InlineData("""{"stepz": 2}""", "job.json: unknown option 'stepz' (known: ")]
    [InlineData("""{"steps": "many"}""", "job.json: 'steps' must be an integer, got \"many\"")]
    [InlineData("""{"steps": 1.5}""", "job.json: 'steps' must be an integer, got 1.5")]
    [InlineData("""{"method": null}""", "job.json: 'method' must be a string, got null")]
    [InlineData("""{"layers": [1]}""", "job.json: 'layers' must be a string or an array of strings, got [1]")]
    [InlineData("""[1]""", "job.json: expected one JSON object")]
    [InlineData("""{"steps": """, "job.json: invalid JSON")]
    public void BadFilesNameTheFileAndKey(string json, string message)
    {
        var e = Assert.Throws<FormatException>(() => FineTuneJobJson.Parse(json, "job.json"));
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void AStringStandsForAOneItemListAndNullForAnOptionalValue()
    {
        var job = FineTuneJobJson.Parse("""{"validation-prompts": "a cube", "lora-alpha": null, "--steps": 2}""", "x");
        Assert.Equal(["a cube"], job.ValidationPrompts);
        Assert.Null(job.LoraAlpha);
        Assert.Equal(2, job.Steps);
    }

    [Fact]
    public void ArgumentsAreTypedSettings()
    {
        var settings = FineTuneJobJson.ParseArguments(["--lora-rank", "8", "--full", "--layers", "a", "b", "--tau", "0.25", "--strict", "false"]);
        Assert.Equal(["--lora-rank 8", "--full", "--layers a b", "--tau 0.25", "--strict False"], settings.Select(s => s.ToString()));
        var job = FineTuneJobJson.With(Runnable(), settings);
        Assert.Equal((8, true, 0.25, false), (job.LoraRank, job.Full, job.Tau, job.Strict));
        Assert.Equal(["a", "b"], job.Layers);

        Assert.Contains("--lora-rank must be an integer, got 'x'", Assert.Throws<FormatException>(() => FineTuneJobJson.ParseArguments(["--lora-rank", "x"])).Message);
        Assert.Contains("expected an option name, got 'stray'", Assert.Throws<FormatException>(() => FineTuneJobJson.ParseArguments(["stray"])).Message);
        Assert.Contains("unknown option '--nope'", Assert.Throws<FormatException>(() => FineTuneJobJson.ParseArguments(["--nope", "1"])).Message);
        Assert.Contains("'steps' must be an integer, got a String", Assert.Throws<FormatException>(() => FineTuneJobJson.With(Runnable(), "steps", "3")).Message);
        Assert.Contains("'method' must be a string, got null", Assert.Throws<FormatException>(() => FineTuneJobJson.With(Runnable(), "method", null)).Message);
    }

    [Fact]
    public void TheAlignmentWeightScalesTheThreeAlignmentTermsTogether()
    {
        var job = Runnable().WithAlignmentWeight(0.01);
        Assert.Equal((0.01, 0.005, 0.001), (job.PixelWeight, job.SemanticWeight, job.BalanceWeight));
        Assert.Equal(FineTuneJob.Defaults.ReconstructionWeight, job.ReconstructionWeight);
        Assert.Equal(Runnable(), Runnable().WithAlignmentWeight(1));
        Assert.Equal(["pixel-weight 0.01", "semantic-weight 0.005", "balance-weight 0.001"],
            FineTuneJobJson.ChangedSettings(FineTuneJob.Defaults.WithAlignmentWeight(0.01)).Select(s => s.ToString().TrimStart('-')));
    }

    [Fact]
    public void ValidationNamesEveryBadKeyAndValue()
    {
        Assert.Empty(Runnable().Problems());
        var bad = new FineTuneJob
        {
            Method = "sideways", Steps = 0, Lr = double.NaN, Resolution = 4, PixelWeight = -1, Tau = double.PositiveInfinity,
            LoraRank = 0, EmaDecay = 1, MapResolution = 2, Layers = [], Threads = -1, Distance = "cosine", TimeWeighting = "quadratic",
        };
        var problems = bad.Problems();
        foreach (string expected in new[]
        {
            "model is required", "data is required", "out is required", "method 'sideways' is not one of ctcal, vanilla", "steps must be positive (got 0)",
            "lr must be a positive number (got NaN)", "resolution 4 is outside [8, 4096]", "pixel-weight must be a finite value >= 0 (got -1)",
            "tau must be a finite value >= 0 (got Infinity)", "lora-rank must be positive (got 0)", "ema-decay must be in (0, 1) (got 1)",
            "map-resolution must be at least 4 (got 2)", "layers must name at least one", "threads must be >= 0, got -1", "distance 'cosine' is not one of mse, l1, kl",
            "time-weighting 'quadratic' is not one of linear, constant",
        })
        {
            Assert.Contains(problems, p => p.StartsWith(expected, StringComparison.Ordinal));
        }

        Assert.Equal(16, problems.Count);
        Assert.Empty((Runnable() with { Full = true, LoraRank = 0 }).Problems()); // LoRA settings do not matter for a full fine-tune
        Assert.Contains("steps must be positive", Assert.Throws<ArgumentException>(() => (Runnable() with { Steps = -2 }).Validate()).Message);
    }

    [Fact]
    public void AlignEveryIsTenByDefaultAndMustNotBeNegative()
    {
        Assert.Equal(10, FineTuneJob.Defaults.AlignEvery);
        Assert.Equal("align-every", FineTuneJobJson.KeyOf(nameof(FineTuneJob.AlignEvery)));
        Assert.Equal(["align-every must be >= 0 (0: off) (got -1)"], (Runnable() with { AlignEvery = -1 }).Problems());
        Assert.Empty((Runnable() with { AlignEvery = 0 }).Problems());
    }

    [Fact]
    public void ReadNamesAMissingFile()
    {
        string path = Path.Combine(TestPaths.NewTempDir("ctcal-job"), "none.json");
        Assert.Contains(path, Assert.Throws<FileNotFoundException>(() => FineTuneJobJson.Read(path)).Message);
    }
}

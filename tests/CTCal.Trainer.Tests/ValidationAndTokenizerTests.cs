using CTCal.Core.Schedulers;
using CTCal.Core.Text;
using CTCal.Tests;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Training;
using SkiaSharp;
using Xunit;

namespace CTCal.Trainer.Tests;

public sealed class ValidationAndTokenizerTests
{
    private static readonly Lazy<ClipTokenizer> Tokenizer = new(() => ClipTokenizer.FromFolder(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "tokenizer")));

    [Fact]
    public void NounsMapToClipTokenPositions()
    {
        var tokens = ClipPromptTokens.From(Tokenizer.Value.Encode("A red cube on top of a blue sphere."));
        var selection = new NounSelector().Select(tokens.Words);
        Assert.Equal(["cube", "sphere"], selection.Nouns.Select(n => n.Text));
        // <|startoftext|> a red cube on top of a blue sphere . -> cube at 3, sphere at 9
        Assert.Equal([3], selection.Nouns[0].TokenPositions);
        Assert.Equal([9], selection.Nouns[1].TokenPositions);
        Assert.Equal(77, tokens.InputIds.Length);

        var plural = new NounSelector().Select(ClipPromptTokens.From(Tokenizer.Value.Encode("three green triangles, two dogs")).Words);
        Assert.Equal(["triangles", "dogs"], plural.Nouns.Select(n => n.Text));
        Assert.All(plural.Nouns, n => Assert.NotEmpty(n.TokenPositions));
    }

    [Fact]
    public void ValidatorWritesADeterministicGrid()
    {
        string dir = TestPaths.NewTempDir("ctcal-validate");
        try
        {
            using var model = new ToyDiffusionModel();
            var config = SchedulerConfig.Load(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "scheduler", "scheduler_config.json"));
            var validator = new SamplingValidator(model, config, ["a red cube", "a blue sphere"], resolution: 8, steps: 3, scheduler: "ddim", seed: 5);
            string first = validator.Validate(3, dir);
            Assert.Equal(Path.Combine(dir, "validation", "step-0000003.png"), first);
            using (var bitmap = SKBitmap.Decode(first))
            {
                Assert.Equal(16, bitmap.Width);
                Assert.Equal(8, bitmap.Height);
            }
            byte[] a = File.ReadAllBytes(first);
            string second = validator.Validate(4, dir);
            Assert.Equal(a, File.ReadAllBytes(second));
            Assert.Throws<ArgumentException>(() => new SamplingValidator(model, config, ["x"], 8, scheduler: "nope"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

using CTCal.Contracts;
using CTCal.Host.Web;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>The web host's PNG text chunk insertion and the A1111 <c>parameters</c> text.</summary>
public sealed class PngTextTests
{
    // A 1x1 RGB PNG, with a tEXt "Software" chunk added.
    private static byte[] SamplePng()
    {
        byte[] png = Convert.FromBase64String("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC");
        png = PngText.Insert(png, "Software", "CTCal");
        return png;
    }

    [Fact]
    public void InsertedParametersReadBackAfterIhdrAndReplaceAnEarlierOne()
    {
        var parameters = new GenerationParameters("tiny", "a red cube, on top", "blurry", 64, 32, 20, 7.5, 42, 1, "euler_a");
        string text = A1111Parameters.Format(parameters, 43);
        Assert.Equal("a red cube, on top\nNegative prompt: blurry\nSteps: 20, Sampler: euler_a, CFG scale: 7.5, Seed: 43, Size: 64x32, Model: tiny", text);

        byte[] once = PngText.Insert(SamplePng(), "parameters", "old");
        byte[] twice = PngText.Insert(once, "parameters", text);
        var entries = PngText.Read(twice);
        Assert.Equal(["parameters", "Software"], entries.Select(e => e.Key));
        Assert.Equal(text, entries[0].Value);

        // The chunk sits right after IHDR (offset 8 + 25), and the image data is untouched.
        Assert.Equal("tEXt"u8.ToArray(), twice.AsSpan(33 + 4, 4).ToArray());
        Assert.Equal(SamplePng().AsSpan(^25).ToArray(), twice.AsSpan(^25).ToArray());
    }

    [Fact]
    public void ImageToImageStrengthAndOddValuesAreWrittenReadably()
    {
        var parameters = new GenerationParameters("my:model", "line one\nline two", "", 8, 8, 2, 1, 0, 1, "ddim", Strength: 0.6);
        Assert.Equal("line one line two\nSteps: 2, Sampler: ddim, CFG scale: 1, Seed: 0, Size: 8x8, Model: \"my:model\", Denoising strength: 0.6",
            A1111Parameters.Format(parameters, 0));
        var read = PngText.Read(PngText.Insert(SamplePng(), "parameters", "a \u4e00 cube"));
        Assert.Equal("a ? cube", read[0].Value);
        Assert.Throws<InvalidDataException>(() => PngText.Insert([1, 2, 3], "parameters", "x"));
        Assert.Throws<ArgumentException>(() => PngText.Insert(SamplePng(), " bad", "x"));
    }
}

using CTCal.Tests;
using CTCal.Trainer.Data;
using SkiaSharp;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>
/// The dataset streams: it keeps records (paths and captions), not pixels; every <see cref="ImageCaptionDataset.LoadImage"/>
/// decodes the file as it is now, so memory does not grow with the number of images.
/// </summary>
public sealed class DatasetStreamingTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-stream");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ImagesAreDecodedOnEveryLoadAndNotHeld()
    {
        DatasetTests.WritePng(Path.Combine(_dir, "a.png"), 8, 8);
        File.WriteAllText(Path.Combine(_dir, "a.txt"), "a red square");
        var dataset = ImageCaptionDataset.Open(_dir, resolution: 8);
        var first = dataset.LoadImage(0)!;
        Assert.Equal(-1f, first[7], 3); // red channel at the right edge, a blue column

        // Replace the image after opening: the next load sees the new pixels, so nothing decoded was kept.
        using (var bitmap = new SKBitmap(8, 8, SKColorType.Rgba8888, SKAlphaType.Unpremul))
        {
            bitmap.Erase(SKColors.White);
            using var stream = File.Create(Path.Combine(_dir, "a.png"));
            bitmap.Encode(stream, SKEncodedImageFormat.Png, 100);
        }
        var second = dataset.LoadImage(0)!;
        Assert.All(second, v => Assert.Equal(1f, v, 3));
    }
}

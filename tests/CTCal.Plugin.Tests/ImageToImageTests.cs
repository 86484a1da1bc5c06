using CTCal.Contracts;
using CTCal.Core.Threading;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Imaging;
using CTCal.Plugin.Onnx;
using CTCal.Plugin.Pipeline;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

public sealed class ImageToImageTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-i2i");
    private readonly PluginRuntime _runtime;
    private readonly OnnxImageGenerator _generator;

    public ImageToImageTests()
    {
        _runtime = new PluginRuntime(
            new PluginSettings { ModelsFolder = Path.Combine(_root, "models"), ExecutionProviders = new[] { ExecutionProviderKind.Cpu }, IntraOpThreads = 1 },
            new RecordingLog());
        _generator = new OnnxImageGenerator(_runtime);
    }

    public void Dispose()
    {
        _runtime.Dispose();
        Directory.Delete(_root, true);
    }

    private static byte[] InitImage(int width, int height)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int i = (y * width + x) * 3;
                rgb[i] = (byte)(x * 255 / width);
                rgb[i + 1] = (byte)(y * 255 / height);
                rgb[i + 2] = 128;
            }
        }

        return PngEncoder.Encode(rgb, width, height);
    }

    private static GenerationRequest Request(long seed, double strength) => new()
    {
        Model = "tiny",
        Prompt = "a red cube",
        Steps = 8,
        Seed = seed,
        Scheduler = "euler_a",
        InitImage = InitImage(64, 48),
        Strength = strength,
    };

    [Theory]
    [InlineData("latent_sample")]
    [InlineData("latent_parameters")]
    public async Task StartsFromTheImageWithEitherEncoderOutput(string output)
    {
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny", vaeEncoderOutput: output);
        var progress = new List<GenerationProgress>();
        var result = await _generator.GenerateAsync(Request(1, 0.5), new SynchronousProgress<GenerationProgress>(progress.Add));
        var png = PngReader.Read(result.Images[0].Png);
        Assert.Equal((64, 48), (png.Width, png.Height));
        Assert.Equal("0.5", png.Text["strength"]);
        Assert.Equal(0.5, result.Parameters.Strength);
        Assert.Equal(4, progress.Count(p => p.Stage == GenerationStage.Denoising)); // half of 8 steps
        Assert.All(progress.Where(p => p.Stage == GenerationStage.Denoising), p => Assert.Equal(4, p.TotalSteps));

        // Strength 0 runs no step and adds no noise: the seed no longer matters.
        var a = await _generator.GenerateAsync(Request(1, 0.0));
        var b = await _generator.GenerateAsync(Request(2, 0.0));
        Assert.Equal(PngReader.Read(a.Images[0].Png).Rgb, PngReader.Read(b.Images[0].Png).Rgb);

        // With strength the seed matters, and a seed repeats.
        var c = await _generator.GenerateAsync(Request(2, 0.75));
        var d = await _generator.GenerateAsync(Request(2, 0.75));
        Assert.Equal(c.Images[0].Png, d.Images[0].Png);
        Assert.NotEqual(PngReader.Read(b.Images[0].Png).Rgb, PngReader.Read(c.Images[0].Png).Rgb);
    }

    [Fact]
    public async Task RefusesModelsWithoutEncoderAndMismatchedSizes()
    {
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => _generator.GenerateAsync(Request(1, 0.5)));
        Assert.Contains("vae_encoder", ex.Message);

        TinySdModel.Create(Path.Combine(_root, "models"), "with-encoder", vaeEncoderOutput: "latent_sample");
        ex = await Assert.ThrowsAsync<ArgumentException>(() => _generator.GenerateAsync(Request(1, 0.5) with { Model = "with-encoder", Width = 32 }));
        Assert.Contains("64x48", ex.Message);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => _generator.GenerateAsync(Request(1, 1.5) with { Model = "with-encoder" }));
        await Assert.ThrowsAsync<InvalidDataException>(() => _generator.GenerateAsync(Request(1, 0.5) with { Model = "with-encoder", InitImage = new byte[] { 1, 2, 3 } }));
    }

    [Fact]
    public void RemainingTimestepsFollowStrength()
    {
        var all = Enumerable.Range(0, 10).Select(i => 900.0 - 100 * i).ToArray();
        Assert.Equal(all, ImageToImage.RemainingTimesteps(all, 1.0));
        Assert.Equal(all[7..], ImageToImage.RemainingTimesteps(all, 0.3));
        Assert.Empty(ImageToImage.RemainingTimesteps(all, 0.0));
    }

    [Fact]
    public void PngDecoderReadsWhatTheEncoderWrites()
    {
        var rgb = new byte[17 * 5 * 3];
        new Random(2).NextBytes(rgb);
        var (decoded, w, h) = PngDecoder.Decode(PngEncoder.Encode(rgb, 17, 5, new Dictionary<string, string> { ["k"] = "v" }));
        Assert.Equal((17, 5), (w, h));
        Assert.Equal(rgb, decoded);
        var corrupt = PngEncoder.Encode(rgb, 17, 5);
        corrupt[20] ^= 0xFF; // inside IHDR
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(corrupt));
    }
}

using CsCheck;
using CTCal.Synthetic;
using SkiaSharp;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// RgbaImage.Decode (training images through SkiaSharp): PNGs written by EncodePng decode to the same pixels; mutated
/// PNG/JPEG/WEBP/BMP/GIF bytes give an image or InvalidDataException. Bound: 64 MiB plus the largest accepted RGBA
/// buffer (4 x MaxDecodedPixels = 64 MiB), since a small valid file may legitimately declare a large image.
/// </summary>
public sealed class RgbaImageFuzzTests
{
    private static readonly Type[] Documented = [typeof(InvalidDataException)];
    private const long Bound = FuzzBounds.AllocationBound + 4 * RgbaImage.MaxDecodedPixels;

    private static readonly Gen<RgbaImage> Images =
        from w in Gen.Int[1, 24]
        from h in Gen.Int[1, 24]
        from seed in Gen.Int
        from opaque in Gen.Bool
        select MakeImage(w, h, seed, opaque);

    private static RgbaImage MakeImage(int w, int h, int seed, bool opaque)
    {
        var pixels = new byte[w * h * 4];
        new Random(seed).NextBytes(pixels);
        if (opaque) for (int i = 3; i < pixels.Length; i += 4) pixels[i] = 255;
        return new RgbaImage(w, h, pixels);
    }

    private static byte[] Encode(RgbaImage image, SKEncodedImageFormat format)
    {
        if (format == SKEncodedImageFormat.Png) return image.EncodePng();
        using var bitmap = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        System.Runtime.InteropServices.Marshal.Copy(image.Pixels, 0, bitmap.GetPixels(), image.Pixels.Length);
        using var data = bitmap.Encode(format, 80);
        return data.ToArray();
    }

    private static Outcome<RgbaImage> Decode(byte[] bytes, string description)
    {
        var outcome = FuzzBounds.Check(() => RgbaImage.Decode(bytes, "fuzz"), description, Documented, Bound);
        if (outcome.Value is { } image)
        {
            Assert.True(image.Width > 0 && image.Height > 0 && (long)image.Width * image.Height <= RgbaImage.MaxDecodedPixels);
            Assert.Equal(image.Width * image.Height * 4, image.Pixels.Length);
        }
        return outcome;
    }

    [Fact]
    public void Png_written_by_EncodePng_decodes_to_the_same_pixels()
    {
        Images.Run(image =>
        {
            var decoded = Decode(image.EncodePng(), $"{image.Width}x{image.Height}").Value!;
            Assert.Equal((image.Width, image.Height), (decoded.Width, decoded.Height));
            Assert.Equal(image.Pixels, decoded.Pixels);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Mutated_images_decode_or_throw_InvalidDataException()
    {
        var formats = Gen.OneOf(SKEncodedImageFormat.Png, SKEncodedImageFormat.Jpeg, SKEncodedImageFormat.Webp);
        Gen.Select(Images, formats, ByteMutator.Mutations(6)).Run((image, format, mutations) =>
        {
            byte[] bytes = ByteMutator.Apply(Encode(image, format), mutations);
            Decode(bytes, $"{format} {image.Width}x{image.Height} mutated by {string.Join(", ", mutations)}: {FuzzBounds.Describe(bytes)}");
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Mutated_corpus_images_decode_or_throw_InvalidDataException()
    {
        var seeds = Corpus.Files("rgba-image", "valid.*").Select(File.ReadAllBytes).ToArray();
        Gen.Select(Gen.Int[0, seeds.Length - 1], ByteMutator.Mutations(6)).Run((i, mutations) =>
        {
            byte[] bytes = ByteMutator.Apply(seeds[i], mutations);
            Decode(bytes, $"seed {i} mutated by {string.Join(", ", mutations)}: {FuzzBounds.Describe(bytes)}");
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("rgba-image"))
        {
            bool expectValid = Path.GetFileName(file).StartsWith("valid.", StringComparison.Ordinal);
            var outcome = Decode(File.ReadAllBytes(file), file);
            Assert.True(outcome.Succeeded == expectValid, $"{file}: {outcome.Error?.Message ?? "decoded"}");
        }
    }
}

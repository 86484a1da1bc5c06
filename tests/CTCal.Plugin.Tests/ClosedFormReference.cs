using System.Text.Json;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// Hand computations for pipelines built from closed-form ONNX models: the CLIP ids of the fixture prompts
/// (tests/data/fixtures/clip-tokenizer/token_ids.json, made with openai/CLIP), the text-encoder mean of a Gather model,
/// an 8x8 stride-8 ConvTranspose VAE decoder, and diffusers' pixel mapping round(clamp(x / 2 + 0.5, 0, 1) * 255).
/// </summary>
internal static class ClosedFormReference
{
    /// <summary>The 77 ids an SD1 pipeline feeds the text encoder for <paramref name="prompt"/> (padded with &lt;|endoftext|&gt;).</summary>
    public static int[] Sd1InputIds(string prompt)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.Fixtures, "clip-tokenizer", "token_ids.json")));
        var match = doc.RootElement.GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("prompt").GetString() == prompt);
        return match.GetProperty("input_ids_sd1_pad_eot").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    /// <summary>mean over the 77 x <paramref name="hidden"/> values of embedding[ids[j], h]: what a Gather text encoder followed by a full ReduceMean gives.</summary>
    public static double TextMean(float[] embedding, int hidden, int[] ids)
    {
        double sum = 0;
        foreach (int id in ids)
        {
            for (int h = 0; h < hidden; h++)
            {
                sum += embedding[id * hidden + h];
            }
        }

        return sum / (ids.Length * hidden);
    }

    /// <summary>
    /// ConvTranspose(z, kernel [4, 3, 8, 8], bias [3], stride 8) for z [1, 4, h, w]: pixel (c, 8y + ky, 8x + kx) =
    /// bias[c] + sum over i of kernel[i, c, ky, kx] * z[i, y, x]. Returns [3, 8h, 8w].
    /// </summary>
    public static double[] Decode(double[] z, int h, int w, float[] kernel, float[] bias)
    {
        int height = 8 * h, width = 8 * w, plane = height * width;
        var image = new double[3 * plane];
        for (int c = 0; c < 3; c++)
        {
            for (int y = 0; y < height; y++)
            {
                for (int x = 0; x < width; x++)
                {
                    double v = bias[c];
                    for (int i = 0; i < 4; i++)
                    {
                        v += kernel[((i * 3 + c) * 8 + y % 8) * 8 + x % 8] * z[(i * h + y / 8) * w + x / 8];
                    }

                    image[c * plane + y * width + x] = v;
                }
            }
        }

        return image;
    }

    /// <summary>
    /// (x / 2 + 0.5) clamped to [0, 1], times 255, for CHW <paramref name="image"/>, in the RGB-rows order of a PNG
    /// ((y * width + x) * 3 + c); still unrounded.
    /// </summary>
    public static double[] ToPixelScale(double[] image, int width, int height)
    {
        int plane = width * height;
        var rgb = new double[3 * plane];
        for (int c = 0; c < 3; c++)
        {
            for (int p = 0; p < plane; p++)
            {
                rgb[p * 3 + c] = Math.Clamp(image[c * plane + p] / 2 + 0.5, 0, 1) * 255;
            }
        }

        return rgb;
    }

    /// <summary>
    /// Each byte must be round(<paramref name="expected"/>); where the expected value lies within 0.01 of a rounding
    /// boundary (k + 0.5) float32 arithmetic may land on either side, so both neighbours are accepted there.
    /// </summary>
    public static void AssertPixels(double[] expected, byte[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        int bad = 0;
        string first = "";
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i];
            double fraction = e - Math.Floor(e);
            bool ok = Math.Abs(fraction - 0.5) < 0.01
                ? actual[i] == Math.Floor(e) || actual[i] == Math.Ceiling(e)
                : actual[i] == Math.Round(e);
            if (!ok && bad++ == 0)
            {
                first = $"byte {i}: expected {e:F3} -> {Math.Round(e)}, got {actual[i]}";
            }
        }

        Assert.True(bad == 0, $"{bad} of {expected.Length} bytes differ; first: {first}");
    }
}

using System.Globalization;
using CTCal.Contracts;

namespace CTCal.Host.Web;

/// <summary>
/// The <c>parameters</c> text of an image in the AUTOMATIC1111 web UI's format (its <c>create_infotext</c>), which other
/// tools (ComfyUI loaders, image browsers, civitai) read from a PNG's <c>parameters</c> tEXt chunk:
/// <code>
/// prompt
/// Negative prompt: negative
/// Steps: 25, Sampler: euler_a, CFG scale: 7.5, Seed: 1, Size: 512x512, Model: my-model
/// </code>
/// </summary>
public static class A1111Parameters
{
    /// <summary>The PNG text keyword the format is stored under.</summary>
    public const string Keyword = "parameters";

    /// <summary>The text for one image of <paramref name="p"/> (its own <paramref name="seed"/>).</summary>
    public static string Format(GenerationParameters p, long seed)
    {
        ArgumentNullException.ThrowIfNull(p);
        var c = CultureInfo.InvariantCulture;
        string settings = string.Join(", ", new[]
        {
            $"Steps: {p.Steps.ToString(c)}",
            $"Sampler: {Clean(p.Scheduler)}",
            $"CFG scale: {p.GuidanceScale.ToString("0.###", c)}",
            $"Seed: {seed.ToString(c)}",
            $"Size: {p.Width.ToString(c)}x{p.Height.ToString(c)}",
            $"Model: {Clean(p.Model)}",
        }.Concat(p.Strength is double s ? [$"Denoising strength: {s.ToString("0.###", c)}"] : []));
        string negative = p.NegativePrompt.Length > 0 ? $"\nNegative prompt: {p.NegativePrompt.ReplaceLineEndings(" ")}" : "";
        return $"{p.Prompt.ReplaceLineEndings(" ")}{negative}\n{settings}";
    }

    // A value with ',' or ':' would split the settings line; A1111 quotes such values.
    private static string Clean(string value) => value.IndexOfAny([',', ':', '\n']) >= 0 ? $"\"{value.Replace("\"", "'")}\"" : value;
}

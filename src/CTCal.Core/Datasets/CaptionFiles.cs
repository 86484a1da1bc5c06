namespace CTCal.Core.Datasets;

/// <summary>One image of an image + <c>.txt</c> dataset and its caption file.</summary>
/// <param name="Image">The image's full path.</param>
/// <param name="CaptionFile">Its same-name <c>.txt</c> (full path; may not exist).</param>
/// <param name="Caption">The trimmed caption, or null when <paramref name="Problem"/> says why there is none.</param>
/// <param name="Problem">"no caption file X.txt" or "empty caption", relative-path prefixed by the caller; null when fine.</param>
public sealed record CaptionFilePair(string Image, string CaptionFile, string? Caption, string? Problem);

/// <summary>
/// The one listing of the image + <c>.txt</c> dataset layout (the other layout is <see cref="MetadataJsonl"/>): every
/// image under the folder (recursively, ordinal path order) whose extension is one of <see cref="ImageExtensions"/>,
/// paired with its same-name <c>.txt</c> caption, and the caption files that have no image. Images are not decoded here;
/// the trainer's dataset and the subjects writer both list through this.
/// </summary>
public static class CaptionFiles
{
    /// <summary>The image extensions of the layout (lower case).</summary>
    public static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"];

    /// <summary>Every image under <paramref name="root"/> with its caption (or the problem that leaves it without one).</summary>
    public static IReadOnlyList<CaptionFilePair> List(string root)
    {
        var pairs = new List<CaptionFilePair>();
        foreach (string image in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
                     .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                     .OrderBy(f => f, StringComparer.Ordinal))
        {
            string captionFile = Path.ChangeExtension(image, ".txt");
            if (!File.Exists(captionFile))
            {
                pairs.Add(new CaptionFilePair(image, captionFile, null, $"no caption file {Path.GetFileName(captionFile)}"));
                continue;
            }
            string caption = File.ReadAllText(captionFile).Trim();
            pairs.Add(caption.Length == 0
                ? new CaptionFilePair(image, captionFile, null, "empty caption")
                : new CaptionFilePair(image, captionFile, caption, null));
        }
        return pairs;
    }

    /// <summary>The <c>.txt</c> files under <paramref name="root"/> that are no listed image's caption (ordinal order).</summary>
    public static IReadOnlyList<string> Orphans(string root, IEnumerable<CaptionFilePair> pairs)
    {
        var captioned = pairs.Select(p => p.CaptionFile).ToHashSet(StringComparer.Ordinal);
        return Directory.EnumerateFiles(root, "*.txt", SearchOption.AllDirectories)
            .Where(f => !captioned.Contains(f)).OrderBy(f => f, StringComparer.Ordinal).ToList();
    }
}

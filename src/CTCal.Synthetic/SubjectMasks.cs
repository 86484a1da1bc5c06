using SkiaSharp;

namespace CTCal.Synthetic;

/// <summary>
/// Per-subject masks of a training record: for each subject noun of its caption ("circle", "triangles"), the union of the
/// scene objects that noun names, rasterised by <see cref="Renderer.RenderMask"/> (255 inside, 0 outside), stored as an
/// 8-bit grayscale PNG of the image's size under <see cref="Folder"/>.
/// </summary>
public static class SubjectMasks
{
    /// <summary>Sub-folder of a dataset folder holding the mask PNGs.</summary>
    public const string Folder = "masks";

    /// <summary>
    /// The scene objects <paramref name="subject"/> names in <paramref name="record"/>: every object whose requested
    /// colour-shape entry is written with that noun (singular for one object, plural for a count); throws naming the
    /// record when the subject names none.
    /// </summary>
    public static IReadOnlyList<SceneObject> ObjectsOf(SyntheticRecord record, string subject)
    {
        ArgumentNullException.ThrowIfNull(record);
        var named = record.Spec.Objects
            .Where(o => (o.Count > 1 ? Shapes.PluralNoun(o.Shape) : Shapes.Noun(o.Shape)) == subject)
            .Select(o => (o.Color, o.Shape))
            .ToHashSet();
        var objects = record.Scene.Objects.Where(o => named.Contains((o.Color, o.Shape))).ToList();
        if (objects.Count == 0)
            throw new ArgumentException($"record {record.FileName}: subject '{subject}' names no object of the scene '{record.Caption}'", nameof(subject));
        return objects;
    }

    /// <summary>The mask of <paramref name="subject"/> in <paramref name="record"/>: one byte per pixel, row-major.</summary>
    public static byte[] Render(SyntheticRecord record, string subject) =>
        Renderer.RenderMask(record.Scene.Width, record.Scene.Height, ObjectsOf(record, subject));

    /// <summary>The mask's path relative to the dataset folder, '/'-separated: <c>masks/00012_circle.png</c>.</summary>
    public static string RelativePath(string imageFileName, string subject) =>
        $"{Folder}/{Path.GetFileNameWithoutExtension(imageFileName)}_{subject}.png";

    /// <summary>Encodes a one-byte-per-pixel mask as an 8-bit grayscale PNG.</summary>
    public static byte[] EncodePng(int width, int height, byte[] mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        if (mask.Length != width * height)
            throw new ArgumentException($"mask holds {mask.Length} bytes, a {width}x{height} mask needs {width * height}", nameof(mask));
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque));
        var pixels = bitmap.GetPixelSpan();
        for (int y = 0; y < height; y++) mask.AsSpan(y * width, width).CopyTo(pixels.Slice(y * bitmap.RowBytes, width));
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new InvalidOperationException($"PNG encoding of a {width}x{height} mask failed");
        return data.ToArray();
    }
}

using System.Text.Json;

namespace CTCal.Trainer.Data;

/// <summary>
/// A captioned image folder in one of two layouts:
/// <list type="bullet">
/// <item>diffusers' image-folder layout: <c>metadata.jsonl</c>, one JSON object per line with <c>file_name</c> (relative to the
/// folder), <c>text</c> (the caption) and optional <c>subjects</c> (array of strings: the nouns to calibrate);</item>
/// <item>images (<c>.png .jpg .jpeg .webp .bmp .gif</c>) each with a caption in a same-name <c>.txt</c> file.</item>
/// </list>
/// Bad records (bad JSON line, missing field, empty caption, <c>file_name</c> leaving the folder, missing or undecodable image)
/// are reported in <see cref="Report"/> with file and line and skipped; with <c>strict</c> they fail
/// <see cref="Open"/> (or <see cref="LoadImage"/>) with a <see cref="DatasetException"/> listing them. Nothing is dropped silently.
/// </summary>
public sealed class ImageCaptionDataset
{
    public static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"];

    private ImageCaptionDataset(string folder, IReadOnlyList<DatasetRecord> records, DatasetReport report, int resolution, bool strict)
    {
        Folder = folder;
        Records = records;
        Report = report;
        Resolution = resolution;
        Strict = strict;
    }

    public string Folder { get; }
    public IReadOnlyList<DatasetRecord> Records { get; }
    public DatasetReport Report { get; }
    public int Resolution { get; }
    public bool Strict { get; }

    /// <summary>
    /// Scans <paramref name="folder"/>; every image is decoded in full once (a truncated or corrupt image is a bad record,
    /// reported with its file and line and counted under <paramref name="strict"/>), then released.
    /// </summary>
    public static ImageCaptionDataset Open(string folder, int resolution, bool strict = false)
    {
        if (!Directory.Exists(folder)) throw new DatasetException($"{folder}: dataset folder does not exist");
        string root = Path.GetFullPath(folder);
        var report = new DatasetReport();
        var records = new List<DatasetRecord>();
        string metadata = Path.Combine(root, "metadata.jsonl");
        if (File.Exists(metadata))
        {
            report.Layout = "metadata.jsonl";
            ReadMetadata(root, metadata, records, report);
        }
        else
        {
            report.Layout = "image+txt";
            ReadCaptionFiles(root, records, report);
        }

        var usable = new List<DatasetRecord>();
        foreach (var record in records)
        {
            string? problem = CheckImage(record.ImagePath);
            if (problem is null) usable.Add(record);
            else report.Problem($"{record.Origin}: {problem}");
        }
        report.Usable = usable.Count;
        if (strict && report.Skipped > 0)
            throw new DatasetException($"{root}: {report.Skipped} bad record(s) (--strict):{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", report.Problems)}");
        if (usable.Count == 0)
            throw new DatasetException($"{root}: no usable records ({report.Layout}); {report.Skipped} skipped" +
                (report.Skipped > 0 ? ":" + Environment.NewLine + "  " + string.Join(Environment.NewLine + "  ", report.Problems) : ""));
        return new ImageCaptionDataset(root, usable, report, resolution, strict);
    }

    /// <summary>
    /// Decodes record <paramref name="index"/> to CHW floats in [-1, 1]; null when it fails (reported), or throws under strict mode.
    /// </summary>
    public float[]? LoadImage(int index)
    {
        var record = Records[index];
        try
        {
            return ImageLoader.LoadCentreCrop(record.ImagePath, Resolution);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            string message = $"{record.Origin}: {e.Message}";
            if (Strict) throw new DatasetException(message + " (--strict)");
            Report.Problem(message);
            return null;
        }
    }

    private static void ReadMetadata(string root, string metadata, List<DatasetRecord> records, DatasetReport report)
    {
        int lineNumber = 0;
        foreach (string line in File.ReadLines(metadata))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string origin = $"metadata.jsonl:{lineNumber}";
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(line);
            }
            catch (JsonException e)
            {
                report.Problem($"{origin}: invalid JSON ({e.Message})");
                continue;
            }
            using (doc)
            {
                var obj = doc.RootElement;
                if (obj.ValueKind != JsonValueKind.Object) { report.Problem($"{origin}: expected a JSON object"); continue; }
                if (!obj.TryGetProperty("file_name", out var fileName) || fileName.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(fileName.GetString()))
                {
                    report.Problem($"{origin}: missing or non-string 'file_name'");
                    continue;
                }
                string name = fileName.GetString()!;
                if (!obj.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                {
                    report.Problem($"{origin}: missing or non-string 'text' for '{name}'");
                    continue;
                }
                string caption = text.GetString()!.Trim();
                if (caption.Length == 0) { report.Problem($"{origin}: empty caption ('text') for '{name}'"); continue; }
                List<string>? subjects = null;
                if (obj.TryGetProperty("subjects", out var subjectsElement) && subjectsElement.ValueKind != JsonValueKind.Null)
                {
                    if (subjectsElement.ValueKind != JsonValueKind.Array || subjectsElement.EnumerateArray().Any(s => s.ValueKind != JsonValueKind.String))
                    {
                        report.Problem($"{origin}: 'subjects' must be an array of strings");
                        continue;
                    }
                    subjects = subjectsElement.EnumerateArray().Select(s => s.GetString()!.Trim()).Where(s => s.Length > 0).ToList();
                }
                string? path = ResolveInside(root, name);
                if (path is null) { report.Problem($"{origin}: file_name '{name}' leaves the dataset folder"); continue; }
                records.Add(new DatasetRecord(path, caption, subjects, origin));
            }
        }
    }

    private static void ReadCaptionFiles(string root, List<DatasetRecord> records, DatasetReport report)
    {
        var images = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToList();
        var captioned = new HashSet<string>(StringComparer.Ordinal);
        foreach (string image in images)
        {
            string relative = Path.GetRelativePath(root, image);
            string captionFile = Path.ChangeExtension(image, ".txt");
            captioned.Add(captionFile);
            if (!File.Exists(captionFile)) { report.Problem($"{relative}: no caption file {Path.GetFileName(captionFile)}"); continue; }
            string caption = File.ReadAllText(captionFile).Trim();
            if (caption.Length == 0) { report.Problem($"{Path.GetRelativePath(root, captionFile)}:1: empty caption"); continue; }
            records.Add(new DatasetRecord(image, caption, null, Path.GetRelativePath(root, captionFile)));
        }
        foreach (string orphan in Directory.EnumerateFiles(root, "*.txt", SearchOption.AllDirectories).Where(f => !captioned.Contains(f)).OrderBy(f => f, StringComparer.Ordinal))
            report.Problem($"{Path.GetRelativePath(root, orphan)}: caption without an image");
    }

    /// <summary>The full path of <paramref name="relative"/> under <paramref name="root"/>, or null when it would leave it.</summary>
    public static string? ResolveInside(string root, string relative)
    {
        if (Path.IsPathRooted(relative)) return null;
        string full = Path.GetFullPath(Path.Combine(root, relative));
        string prefix = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        return full.StartsWith(prefix, StringComparison.Ordinal) ? full : null;
    }

    private static string? CheckImage(string path)
    {
        if (!File.Exists(path)) return $"image {path} does not exist";
        try
        {
            using var bitmap = ImageLoader.DecodeComplete(path);
            return null;
        }
        catch (InvalidDataException e)
        {
            return $"image {e.Message}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"image {path} cannot be read ({e.Message})";
        }
    }
}

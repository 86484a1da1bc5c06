using System.Text.Json;
using CTCal.Core.Datasets;
using CTCal.Core.Models;
using CTCal.Core.Text;

namespace CTCal.Trainer.Data;

/// <summary>
/// A captioned image folder in one of two layouts:
/// <list type="bullet">
/// <item>diffusers' image-folder layout: <c>metadata.jsonl</c>, one JSON object per line with <c>file_name</c> (relative to the
/// folder), <c>text</c> (the caption), optional <c>subjects</c> (array of strings: the nouns to calibrate) and optional
/// <c>masks</c> (object: subject -> relative path of an 8-bit grayscale PNG of the image's size, 255 inside the subject's
/// objects, 0 outside; read by <see cref="LoadMasks"/>);</item>
/// <item>images (<c>.png .jpg .jpeg .webp .bmp .gif</c>) each with a caption in a same-name <c>.txt</c> file.</item>
/// </list>
/// Bad records (bad JSON line, missing field, empty caption, <c>file_name</c> leaving the folder, missing or undecodable image,
/// a mask entry whose key is not a subject or whose file leaves the folder, is missing, undecodable or not the image's size)
/// are reported in <see cref="Report"/> with file and line and skipped; with <c>strict</c> they fail
/// <see cref="Open"/> (or <see cref="LoadImage"/>) with a <see cref="DatasetException"/> listing them. Nothing is dropped silently.
/// </summary>
public sealed class ImageCaptionDataset
{
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
    /// <summary>The same dataset with each record's subjects replaced by <paramref name="subjects"/> of it (images untouched).</summary>
    public ImageCaptionDataset WithSubjects(Func<DatasetRecord, IReadOnlyList<string>?> subjects)
    {
        ArgumentNullException.ThrowIfNull(subjects);
        return new ImageCaptionDataset(Folder, Records.Select(r => r with { Subjects = subjects(r) }).ToArray(), Report, Resolution, Strict);
    }

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
            string? problem = CheckImage(record.ImagePath) ?? CheckMasks(record);
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

    /// <summary>
    /// The masks of record <paramref name="index"/> (subject -> <paramref name="side"/>² values in [0, 1], row-major), each
    /// cropped like the image and area-averaged (<see cref="MaskLoader"/>); empty when the record has none.
    /// </summary>
    /// <exception cref="DatasetException">a mask that was readable at <see cref="Open"/> no longer is (names the record and key).</exception>
    public IReadOnlyDictionary<string, float[]> LoadMasks(int index, int side)
    {
        var record = Records[index];
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        if (record.Masks is null) return result;
        foreach (var (subject, path) in record.Masks)
        {
            try
            {
                result[subject] = MaskLoader.Load(path, side);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                throw new DatasetException($"{record.Origin}: masks['{subject}']: {e.Message}");
            }
        }
        return result;
    }

    private static void ReadMetadata(string root, string metadata, List<DatasetRecord> records, DatasetReport report)
    {
        foreach (var (lineNumber, line, problem) in MetadataJsonl.Read(metadata))
        {
            string origin = $"metadata.jsonl:{lineNumber}";
            if (line is null) { report.Problem($"{origin}: {problem}"); continue; }
            string? path = ResolveInside(root, line.FileName);
            if (path is null) { report.Problem($"{origin}: file_name '{line.FileName}' leaves the dataset folder"); continue; }
            Dictionary<string, string>? masks = null;
            if (line.Masks is not null)
            {
                string? maskProblem = ResolveMasks(root, line.Masks, out masks);
                if (maskProblem is not null) { report.Problem($"{origin}: {maskProblem}"); continue; }
            }
            records.Add(new DatasetRecord(path, line.Text.Trim(), line.Subjects?.ToList(), origin, masks));
        }
    }

    /// <summary>The masks as subject -> full path inside the dataset folder, or the problem (naming the key) that makes the record bad.</summary>
    private static string? ResolveMasks(string root, IReadOnlyDictionary<string, string> relative, out Dictionary<string, string>? masks)
    {
        masks = null;
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, path) in relative)
        {
            try
            {
                result[key] = PathGuard.ResolveInside(root, path);
            }
            catch (UnsafePathException e)
            {
                return $"masks['{key}']: '{path}' is not a file inside the dataset folder ({e.Message})";
            }
        }
        masks = result;
        return null;
    }

    /// <summary>Each mask exists, decodes completely and has the image's size; the problem naming the key otherwise.</summary>
    private static string? CheckMasks(DatasetRecord record)
    {
        if (record.Masks is null) return null;
        (int Width, int Height) image;
        try
        {
            image = MaskLoader.Size(record.ImagePath);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return $"image {e.Message}";
        }
        foreach (var (subject, path) in record.Masks)
        {
            if (!File.Exists(path)) return $"masks['{subject}']: mask {path} does not exist";
            try
            {
                using var bitmap = ImageLoader.DecodeComplete(path);
                if (bitmap.Width != image.Width || bitmap.Height != image.Height)
                    return $"masks['{subject}']: mask {path} is {bitmap.Width}x{bitmap.Height}, its image is {image.Width}x{image.Height}";
            }
            catch (InvalidDataException e)
            {
                return $"masks['{subject}']: mask {e.Message}";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return $"masks['{subject}']: mask {path} cannot be read ({e.Message})";
            }
        }
        return null;
    }

    private static void ReadCaptionFiles(string root, List<DatasetRecord> records, DatasetReport report)
    {
        var pairs = CaptionFiles.List(root);
        foreach (var pair in pairs)
        {
            if (pair.Caption is null)
            {
                string at = pair.Problem == "empty caption" ? $"{Path.GetRelativePath(root, pair.CaptionFile)}:1" : Path.GetRelativePath(root, pair.Image);
                report.Problem($"{at}: {pair.Problem}");
                continue;
            }
            records.Add(new DatasetRecord(pair.Image, pair.Caption, null, Path.GetRelativePath(root, pair.CaptionFile)));
        }
        foreach (string orphan in CaptionFiles.Orphans(root, pairs))
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

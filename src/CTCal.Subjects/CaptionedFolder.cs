using CTCal.Core.Datasets;

namespace CTCal.Subjects;

/// <summary>
/// The records of a dataset folder in either layout the trainer reads: <c>metadata.jsonl</c>, or images
/// (<c>.png .jpg .jpeg .webp .bmp .gif</c>) each with a same-name <c>.txt</c> caption (read as records with
/// <c>file_name</c> relative to the folder, '/'-separated, and no subjects). Images are not decoded here.
/// </summary>
public static class CaptionedFolder
{
    /// <summary>The image extensions of the image + .txt layout (the trainer's list).</summary>
    public static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"];

    /// <summary>
    /// The folder's records and its layout ("metadata.jsonl" or "image+txt"). A bad <c>metadata.jsonl</c> line, an image
    /// without its caption file or an empty caption throws <see cref="InvalidDataException"/> naming the file and line.
    /// </summary>
    public static (IReadOnlyList<MetadataLine> Records, string Layout) Read(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: dataset folder does not exist");
        string metadata = Path.Combine(folder, MetadataJsonl.FileName);
        var records = new List<MetadataLine>();
        if (File.Exists(metadata))
        {
            foreach (var (number, line, problem) in MetadataJsonl.Read(metadata))
            {
                records.Add(line ?? throw new InvalidDataException($"{metadata}:{number}: {problem}"));
            }
            return (records, "metadata.jsonl");
        }

        string root = Path.GetFullPath(folder);
        foreach (string image in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
                     .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                     .OrderBy(f => f, StringComparer.Ordinal))
        {
            string captionFile = Path.ChangeExtension(image, ".txt");
            if (!File.Exists(captionFile)) throw new InvalidDataException($"{image}: no caption file {Path.GetFileName(captionFile)}");
            string caption = File.ReadAllText(captionFile).Trim();
            if (caption.Length == 0) throw new InvalidDataException($"{captionFile}:1: empty caption");
            records.Add(new MetadataLine(Path.GetRelativePath(root, image).Replace(Path.DirectorySeparatorChar, '/'), caption));
        }
        return (records, "image+txt");
    }
}

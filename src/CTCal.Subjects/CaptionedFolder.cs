using CTCal.Core.Datasets;

namespace CTCal.Subjects;

/// <summary>
/// The records of a dataset folder in either layout the trainer reads: <c>metadata.jsonl</c>, or images
/// each with a same-name <c>.txt</c> caption (listed by <see cref="CaptionFiles"/>) (read as records with
/// <c>file_name</c> relative to the folder, '/'-separated, and no subjects). Images are not decoded here.
/// </summary>
public static class CaptionedFolder
{
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
        foreach (var pair in CaptionFiles.List(root))
        {
            if (pair.Caption is null)
                throw new InvalidDataException(pair.Problem == "empty caption" ? $"{pair.CaptionFile}:1: empty caption" : $"{pair.Image}: {pair.Problem}");
            records.Add(new MetadataLine(Path.GetRelativePath(root, pair.Image).Replace(Path.DirectorySeparatorChar, '/'), pair.Caption));
        }
        return (records, "image+txt");
    }
}

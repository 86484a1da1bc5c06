namespace CTCal.Trainer.Data;

/// <summary>One training example: an image file, its caption and optional explicit subjects.</summary>
/// <param name="ImagePath">Full path of the image (inside the dataset folder).</param>
/// <param name="Caption">The prompt.</param>
/// <param name="Subjects">Explicit subject nouns from <c>metadata.jsonl</c>, or null.</param>
/// <param name="Origin">Where the record came from, for messages (<c>metadata.jsonl:12</c> or the caption file).</param>
/// <param name="Masks">Optional per-subject masks from <c>metadata.jsonl</c>: subject -> full path of its mask PNG (checked:
/// inside the folder, decodable, the image's size, the key one of <paramref name="Subjects"/>), or null.</param>
public sealed record DatasetRecord(string ImagePath, string Caption, IReadOnlyList<string>? Subjects, string Origin,
    IReadOnlyDictionary<string, string>? Masks = null);

/// <summary>What loading a dataset found: usable records and, for every skipped one, a message naming file and line.</summary>
public sealed class DatasetReport
{
    private readonly List<string> _problems = [];
    private readonly object _gate = new();

    /// <summary>The folder's layout: <c>metadata.jsonl</c> or <c>image+txt</c>.</summary>
    public string Layout { get; internal set; } = "";

    public int Usable { get; internal set; }

    /// <summary>Records skipped at scan time or later when their image failed to decode.</summary>
    public int Skipped { get { lock (_gate) return _problems.Count; } }

    public IReadOnlyList<string> Problems { get { lock (_gate) return _problems.ToArray(); } }

    internal void Problem(string message)
    {
        lock (_gate) _problems.Add(message);
    }

    public override string ToString() =>
        $"{Usable} usable records ({Layout}), {Skipped} skipped" + (Skipped == 0 ? "" : ":" + Environment.NewLine + "  " + string.Join(Environment.NewLine + "  ", Problems));
}

/// <summary>A dataset problem that stops the run (strict mode, or no usable record at all).</summary>
public sealed class DatasetException(string message) : Exception(message);

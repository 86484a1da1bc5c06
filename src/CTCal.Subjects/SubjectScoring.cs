namespace CTCal.Subjects;

/// <summary>A caption labelled with its subjects (a benchmark item).</summary>
/// <param name="Caption">The caption.</param>
/// <param name="Subjects">The subjects a person chose (lower case).</param>
public sealed record LabelledSubjects(string Caption, IReadOnlyList<string> Subjects);

/// <summary>Precision and recall over subject words, summed over a set.</summary>
/// <param name="TruePositives">Predicted subject words that are label words.</param>
/// <param name="Predicted">Predicted subject words.</param>
/// <param name="Labelled">Label subject words.</param>
/// <param name="ExactCaptions">Captions whose predicted word set equals the label's.</param>
/// <param name="Captions">Captions scored.</param>
public sealed record SubjectScore(int TruePositives, int Predicted, int Labelled, int ExactCaptions, int Captions)
{
    /// <summary>TP / predicted (1 when nothing was predicted).</summary>
    public double Precision => Predicted == 0 ? 1 : (double)TruePositives / Predicted;

    /// <summary>TP / labelled.</summary>
    public double Recall => Labelled == 0 ? 1 : (double)TruePositives / Labelled;

    /// <summary>Share of captions exactly right.</summary>
    public double ExactRate => Captions == 0 ? 0 : (double)ExactCaptions / Captions;
}

/// <summary>
/// Reads labelled caption files (<c>caption | subject, subject</c> per line, '#' comments) and scores predicted subjects
/// against them at the word level: a compound subject ("teddy bear") counts as its words, each caption's words as a set.
/// </summary>
public static class SubjectScoring
{
    /// <summary>The items of the file at <paramref name="path"/>; a malformed line throws naming the file and line.</summary>
    public static IReadOnlyList<LabelledSubjects> Read(string path)
    {
        var items = new List<LabelledSubjects>();
        int number = 0;
        foreach (string raw in File.ReadLines(path))
        {
            number++;
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            int bar = line.IndexOf('|', StringComparison.Ordinal);
            if (bar <= 0) throw new InvalidDataException($"{path}:{number}: expected 'caption | subject, subject', got '{line}'");
            var subjects = line[(bar + 1)..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(s => s.ToLowerInvariant()).ToArray();
            if (subjects.Length == 0) throw new InvalidDataException($"{path}:{number}: no subjects after '|'");
            items.Add(new LabelledSubjects(line[..bar].Trim(), subjects));
        }
        return items;
    }

    /// <summary>Scores <paramref name="predicted"/> (one subject list per item, in order) against <paramref name="items"/>.</summary>
    public static SubjectScore Score(IReadOnlyList<LabelledSubjects> items, IReadOnlyList<IReadOnlyList<string>> predicted)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(predicted);
        if (items.Count != predicted.Count) throw new ArgumentException($"{predicted.Count} predictions for {items.Count} items");
        int tp = 0, p = 0, l = 0, exact = 0;
        for (int i = 0; i < items.Count; i++)
        {
            var truth = Words(items[i].Subjects);
            var got = Words(predicted[i]);
            tp += got.Count(truth.Contains);
            p += got.Count;
            l += truth.Count;
            if (got.SetEquals(truth)) exact++;
        }
        return new SubjectScore(tp, p, l, exact, items.Count);
    }

    private static HashSet<string> Words(IEnumerable<string> subjects) =>
        subjects.SelectMany(CaptionWords.Of).ToHashSet(StringComparer.Ordinal);
}

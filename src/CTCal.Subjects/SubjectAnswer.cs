using System.Text.Json;

namespace CTCal.Subjects;

/// <summary>Why a model answer was not used.</summary>
public enum AnswerProblem
{
    /// <summary>The answer was used.</summary>
    None,
    /// <summary>Not a JSON list of strings.</summary>
    NotAJsonList,
    /// <summary>An empty list or only blank items.</summary>
    Empty,
    /// <summary>An item that is not a run of the caption's words.</summary>
    NotInCaption,
    /// <summary>An item with a direction/layout word (left, top, behind, ...).</summary>
    LayoutWord,
    /// <summary>The runtime failed on this caption.</summary>
    RuntimeError,
}

/// <summary>Parses and validates a subject model's answer against its caption.</summary>
public static class SubjectAnswer
{
    /// <summary>The items of a JSON list of strings (trimmed), or null when <paramref name="answer"/> is not one.</summary>
    public static IReadOnlyList<string>? Parse(string answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        string text = answer.Trim();
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.ValueKind != JsonValueKind.Array) return null;
            var items = new List<string>();
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.String) return null;
                items.Add(e.GetString()!.Trim());
            }
            return items;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// Validates <paramref name="answer"/> for <paramref name="caption"/>: every item must be one or more consecutive words
    /// of the caption (case-insensitive, punctuation ignored) and contain no layout word (<paramref name="isLayout"/>);
    /// duplicates are dropped. Returns the subjects as the caption's lower-case words, or null with the problem.
    /// </summary>
    public static IReadOnlyList<string>? Validate(string caption, string answer, Func<string, bool> isLayout, out AnswerProblem problem)
    {
        ArgumentNullException.ThrowIfNull(isLayout);
        var items = Parse(answer);
        if (items is null)
        {
            problem = AnswerProblem.NotAJsonList;
            return null;
        }
        var words = CaptionWords.Of(caption);
        var subjects = new List<string>();
        foreach (string item in items)
        {
            var parts = CaptionWords.Of(item);
            if (parts.Count == 0) continue;
            if (string.Join(' ', parts) != item.ToLowerInvariant().Trim() || !ContainsRun(words, parts))
            {
                problem = AnswerProblem.NotInCaption;
                return null;
            }
            if (parts.Any(isLayout))
            {
                problem = AnswerProblem.LayoutWord;
                return null;
            }
            string subject = string.Join(' ', parts);
            if (!subjects.Contains(subject, StringComparer.Ordinal)) subjects.Add(subject);
        }
        if (subjects.Count == 0)
        {
            problem = AnswerProblem.Empty;
            return null;
        }
        problem = AnswerProblem.None;
        return subjects;
    }

    private static bool ContainsRun(IReadOnlyList<string> words, IReadOnlyList<string> run)
    {
        for (int start = 0; start + run.Count <= words.Count; start++)
        {
            bool match = true;
            for (int i = 0; i < run.Count && match; i++) match = words[start + i] == run[i];
            if (match) return true;
        }
        return false;
    }
}

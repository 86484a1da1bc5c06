using System.Text.RegularExpressions;

namespace CTCal.Subjects;

/// <summary>A caption's words as the subject prompt and the validation see them: lower case, letters, digits, '-' and '\''.</summary>
public static partial class CaptionWords
{
    /// <summary>The words of <paramref name="caption"/> in order (lower case; punctuation dropped).</summary>
    public static IReadOnlyList<string> Of(string caption)
    {
        ArgumentNullException.ThrowIfNull(caption);
        return WordPattern().Matches(caption.ToLowerInvariant()).Select(m => m.Value.Trim('-', '\'')).Where(w => w.Length > 0).ToArray();
    }

    /// <summary>The caption as the model reads it: its words joined by single spaces.</summary>
    public static string Normalise(string caption) => string.Join(' ', Of(caption));

    [GeneratedRegex(@"[\p{L}\p{N}][\p{L}\p{N}'\-]*", RegexOptions.CultureInvariant)]
    private static partial Regex WordPattern();
}

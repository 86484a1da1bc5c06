using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace CTCal.Subjects;

/// <summary>
/// The subject model's prompt and answer format: the prompt is a space, the caption's normalised words and
/// <see cref="Separator"/> (<c> a red cube on top of a blue sphere =&gt;</c>); the answer is a compact JSON list of subjects,
/// each one or more consecutive words of the caption written with the leading space they have in the prompt
/// (<c>[" cube"," sphere"]</c>, so an answer word is the same token as the caption word), then the end token. Items
/// are trimmed when read.
/// </summary>
public static class SubjectPrompt
{
    /// <summary>Ends the prompt.</summary>
    public const string Separator = " =>";

    /// <summary>The longest subject in words that the constrained format allows ("teddy bear" is two).</summary>
    public const int MaxSubjectWords = 2;

    /// <summary>The prompt for <paramref name="caption"/>.</summary>
    public static string For(string caption) => " " + CaptionWords.Normalise(caption) + Separator;

    /// <summary>The answer text for <paramref name="subjects"/> (what the model is trained to write).</summary>
    public static string Answer(IEnumerable<string> subjects)
    {
        ArgumentNullException.ThrowIfNull(subjects);
        var sb = new StringBuilder("[");
        bool first = true;
        foreach (string s in subjects)
        {
            if (!first) sb.Append(',');
            sb.Append(JsonSerializer.Serialize(" " + CaptionWords.Normalise(s)));
            first = false;
        }
        return sb.Append(']').ToString();
    }

    /// <summary>
    /// The regular expression the constrained output follows for <paramref name="caption"/>: a JSON list of one to four
    /// items, each a caption word or two consecutive caption words, never a layout word
    /// (<paramref name="isLayout"/>).
    /// </summary>
    public static string ConstraintRegex(string caption, Func<string, bool> isLayout)
    {
        ArgumentNullException.ThrowIfNull(isLayout);
        var words = CaptionWords.Of(caption);
        var items = new SortedSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < words.Count; i++)
        {
            for (int n = 1; n <= MaxSubjectWords && i + n <= words.Count; n++)
            {
                var run = words.Skip(i).Take(n).ToArray();
                if (run.Any(isLayout)) break;
                items.Add(" " + string.Join(' ', run));
            }
        }
        if (items.Count == 0) return "\\[\\]";
        string item = "\"(" + string.Join('|', items.Select(Regex.Escape)) + ")\"";
        return $"\\[{item}(,{item}){{0,3}}\\]";
    }
}

using System.Reflection;

namespace CTCal.Core.Text;

/// <summary>
/// The bundled English word lists used to find subject nouns without a network or a tagger model
/// (embedded resources from Text/lexicon/*.txt: whitespace-separated words, '#' starts a comment).
/// </summary>
public sealed class NounLexicon
{
    public required IReadOnlySet<string> Nouns { get; init; }
    /// <summary>Adjectives, colours, numbers, determiners/pronouns/conjunctions, prepositions and verbs: never nouns on their own.</summary>
    public required IReadOnlySet<string> Modifiers { get; init; }
    /// <summary>Words that open a noun phrase (determiners, numbers, adjectives, colours).</summary>
    public required IReadOnlySet<string> PhraseOpeners { get; init; }
    /// <summary>Direction and layout words, never calibrated.</summary>
    public required IReadOnlySet<string> Layout { get; init; }
    /// <summary>Irregular plural -> singular.</summary>
    public required IReadOnlyDictionary<string, string> IrregularPlurals { get; init; }

    private static readonly Lazy<NounLexicon> BundledLazy = new(LoadBundled);

    /// <summary>The lexicon shipped inside the core assembly.</summary>
    public static NounLexicon Bundled => BundledLazy.Value;

    private static NounLexicon LoadBundled()
    {
        var nouns = Words("nouns");
        var colours = Words("colours");
        var adjectives = Words("adjectives");
        var numbers = Words("numbers");
        var determiners = Words("determiners");
        var prepositions = Words("prepositions");
        var verbs = Words("verbs");
        var layout = Words("layout");
        var irregular = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in Lines("irregular-plurals"))
        {
            var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2) throw new InvalidDataException($"lexicon/irregular-plurals.txt: expected 'plural singular', got '{line}'");
            irregular[parts[0]] = parts[1];
        }
        return new NounLexicon
        {
            Nouns = nouns,
            Modifiers = Union(colours, adjectives, numbers, determiners, prepositions, verbs),
            PhraseOpeners = Union(colours, adjectives, numbers, determiners),
            Layout = layout,
            IrregularPlurals = irregular,
        };
    }

    private static HashSet<string> Union(params HashSet<string>[] sets)
    {
        var all = new HashSet<string>(StringComparer.Ordinal);
        foreach (var s in sets) all.UnionWith(s);
        return all;
    }

    private static IEnumerable<string> Lines(string name)
    {
        string resource = $"CTCal.Core.Text.lexicon.{name}.txt";
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"embedded lexicon '{resource}' is missing from the core assembly");
        using var reader = new StreamReader(stream);
        var lines = new List<string>();
        while (reader.ReadLine() is { } line)
        {
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            line = line.Trim();
            if (line.Length > 0) lines.Add(line.ToLowerInvariant());
        }
        return lines;
    }

    private static HashSet<string> Words(string name) =>
        new(Lines(name).SelectMany(l => l.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)), StringComparer.Ordinal);

    /// <summary>
    /// The lexicon singular of <paramref name="word"/> (lower case) when the word or a singular derived from it by the
    /// irregular list or the regular rules (-ies→-y, -ves→-f/-fe, -es, -s) is a known noun; otherwise null.
    /// </summary>
    public string? NounLemma(string word)
    {
        if (Nouns.Contains(word)) return word;
        if (IrregularPlurals.TryGetValue(word, out var singular) && Nouns.Contains(singular)) return singular;
        foreach (var candidate in SingularCandidates(word))
            if (Nouns.Contains(candidate)) return candidate;
        return null;
    }

    /// <summary>Regular singular forms a plural could come from, most specific first.</summary>
    public static IEnumerable<string> SingularCandidates(string word)
    {
        if (word.Length > 3 && word.EndsWith("ies", StringComparison.Ordinal)) yield return word[..^3] + "y";
        if (word.Length > 3 && word.EndsWith("ves", StringComparison.Ordinal))
        {
            yield return word[..^3] + "f";
            yield return word[..^3] + "fe";
        }
        if (word.Length > 2 && word.EndsWith("es", StringComparison.Ordinal)) yield return word[..^2];
        if (word.Length > 1 && word.EndsWith('s') && !word.EndsWith("ss", StringComparison.Ordinal)) yield return word[..^1];
    }
}

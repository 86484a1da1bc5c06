namespace CTCal.Core.Text;

/// <summary>
/// The pieces CTCal's tiny subject model gives one token each (<see cref="ByteLevelBpe.Build"/>): every word of the bundled
/// <see cref="NounLexicon"/> (nouns with their regular and irregular plurals, modifiers, layout words) and the extra words
/// given, each with its leading space (the prompt puts a space before every caption word), plus the answer's punctuation
/// runs (<c>["</c>, <c>","</c>, <c>"]</c>, <c>[]</c>) and the prompt separator <c> =&gt;</c>. Any other text still encodes
/// (byte by byte).
/// </summary>
public static class SubjectVocabulary
{
    /// <summary>The pieces, in a fixed order (so the tokenizer is the same on every machine).</summary>
    public static IReadOnlyList<string> Pieces(NounLexicon lexicon, IEnumerable<string> extraWords)
    {
        ArgumentNullException.ThrowIfNull(lexicon);
        ArgumentNullException.ThrowIfNull(extraWords);
        var words = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string noun in lexicon.Nouns)
        {
            words.Add(noun);
            words.Add(Plural(noun));
        }
        foreach (var (plural, singular) in lexicon.IrregularPlurals)
        {
            words.Add(plural);
            words.Add(singular);
        }
        words.UnionWith(lexicon.Modifiers);
        words.UnionWith(lexicon.Layout);
        foreach (string w in extraWords) words.Add(w.ToLowerInvariant());
        var pieces = new List<string> { "[\"", "\",\"", "\"]", "[]", " =>" };
        pieces.AddRange(words.Where(w => w.Length > 0 && !w.Contains(' ', StringComparison.Ordinal)).Select(w => " " + w));
        return pieces;
    }

    /// <summary>The regular English plural of <paramref name="noun"/> (-s, -es after s/x/z/ch/sh, consonant+y -> -ies).</summary>
    public static string Plural(string noun)
    {
        ArgumentNullException.ThrowIfNull(noun);
        if (noun.Length > 1 && noun.EndsWith('y') && !"aeiou".Contains(noun[^2], StringComparison.Ordinal)) return noun[..^1] + "ies";
        if (noun.EndsWith('s') || noun.EndsWith('x') || noun.EndsWith('z') || noun.EndsWith("ch", StringComparison.Ordinal) || noun.EndsWith("sh", StringComparison.Ordinal))
            return noun + "es";
        return noun + "s";
    }
}

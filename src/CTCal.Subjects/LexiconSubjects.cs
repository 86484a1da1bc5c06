using CTCal.Core.Text;

namespace CTCal.Subjects;

/// <summary>The subjects the bundled lexicon and rules find in a caption (<see cref="NounSelector"/>): the fallback.</summary>
public sealed class LexiconSubjects
{
    private readonly NounSelector _selector;

    /// <summary>Uses <paramref name="lexicon"/> (the bundled one by default).</summary>
    public LexiconSubjects(NounLexicon? lexicon = null)
    {
        Lexicon = lexicon ?? NounLexicon.Bundled;
        _selector = new NounSelector(Lexicon);
    }

    /// <summary>The lexicon in use.</summary>
    public NounLexicon Lexicon { get; }

    /// <summary>True for a direction/layout word (never a subject).</summary>
    public bool IsLayout(string word) => Lexicon.Layout.Contains(word.ToLowerInvariant());

    /// <summary>The lexicon's subjects of <paramref name="caption"/>, as lower-case caption words, in caption order.</summary>
    public IReadOnlyList<string> Of(string caption)
    {
        var words = CaptionWords.Of(caption);
        var promptWords = words.Select((w, i) => new PromptWord(w, [i])).ToArray();
        return _selector.Select(promptWords).Nouns.Select(n => n.Text).Distinct(StringComparer.Ordinal).ToArray();
    }
}

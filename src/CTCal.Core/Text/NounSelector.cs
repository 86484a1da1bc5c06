namespace CTCal.Core.Text;

/// <summary>A word of a prompt as the tokenizer reports it, with the positions of its tokens in the encoder input.</summary>
public sealed record PromptWord(string Text, int[] TokenPositions);

/// <summary>
/// A noun (or compound noun such as "teddy bear") chosen for calibration, with all its token positions, and the
/// dataset subject it was matched to (null when the lexicon chose it).
/// </summary>
public sealed record SelectedNoun(string Text, int[] TokenPositions, string? Subject = null);

/// <summary>Where the nouns came from.</summary>
public enum NounSource
{
    /// <summary>The dataset record's explicit <c>subjects</c>.</summary>
    Subjects,
    /// <summary>The bundled lexicon and noun-phrase heuristic.</summary>
    Lexicon,
}

/// <param name="Nouns">Nouns to calibrate, in prompt order (empty: the sample trains with the diffusion loss only).</param>
/// <param name="Source">How they were chosen.</param>
/// <param name="UnmatchedSubjects">Explicit subjects that do not occur in the prompt (or were cut off by truncation).</param>
public sealed record NounSelection(IReadOnlyList<SelectedNoun> Nouns, NounSource Source, IReadOnlyList<string> UnmatchedSubjects);

/// <summary>
/// Chooses the noun tokens CTCal calibrates. With explicit subjects (from the dataset record) each subject phrase is found in
/// the prompt's words (case- and plural-insensitive). Otherwise a small rule-based tagger runs over the bundled
/// <see cref="NounLexicon"/>:
/// <list type="bullet">
/// <item>direction/layout words (top, left, behind, side, ...) are never nouns;</item>
/// <item>a lexicon noun (or its plural) is a noun, unless it is also a modifier word (orange, glass, square, ...) and the next word
/// is a noun (then it modifies that noun);</item>
/// <item>adjacent nouns form one compound noun ("teddy bear", "coffee cup"), calibrated through all its tokens;</item>
/// <item>an unknown word is a noun when it ends a noun phrase: a determiner, number, adjective or colour precedes it (possibly
/// through other unknown words) and the next word is not a noun or unknown word ("a red zorblax on the table").</item>
/// </list>
/// Words with no token positions (cut off by the 77-token limit) are skipped.
/// </summary>
public sealed class NounSelector
{
    private readonly NounLexicon _lexicon;

    public NounSelector(NounLexicon? lexicon = null) => _lexicon = lexicon ?? NounLexicon.Bundled;

    public NounSelection Select(IReadOnlyList<PromptWord> words, IReadOnlyList<string>? subjects = null)
    {
        var normalised = words.Select(w => Normalise(w.Text)).ToArray();
        if (subjects is { Count: > 0 }) return SelectSubjects(words, normalised, subjects);

        var kinds = new WordKind[words.Count];
        for (int i = 0; i < words.Count; i++) kinds[i] = Classify(normalised[i]);

        var isNoun = new bool[words.Count];
        for (int i = 0; i < words.Count; i++)
        {
            switch (kinds[i])
            {
                case WordKind.Noun:
                    isNoun[i] = true;
                    break;
                case WordKind.NounOrModifier:
                    isNoun[i] = !NextIsNominal(kinds, i);
                    break;
                case WordKind.Unknown:
                    isNoun[i] = OpensPhraseBefore(kinds, normalised, i) && !NextIsNominal(kinds, i);
                    break;
            }
        }

        var nouns = new List<SelectedNoun>();
        for (int i = 0; i < words.Count;)
        {
            if (!isNoun[i] || words[i].TokenPositions.Length == 0) { i++; continue; }
            int j = i;
            while (j + 1 < words.Count && isNoun[j + 1] && words[j + 1].TokenPositions.Length > 0) j++;
            nouns.Add(new SelectedNoun(
                string.Join(' ', Enumerable.Range(i, j - i + 1).Select(x => words[x].Text)),
                Enumerable.Range(i, j - i + 1).SelectMany(x => words[x].TokenPositions).ToArray()));
            i = j + 1;
        }
        return new NounSelection(nouns, NounSource.Lexicon, []);
    }

    private enum WordKind { Other, Layout, Modifier, Noun, NounOrModifier, Unknown }

    private static string Normalise(string text) => text.Trim().ToLowerInvariant();

    private static bool IsWord(string w) => w.Length > 0 && w.All(c => char.IsLetter(c) || c == '-' || c == '\'') && w.Any(char.IsLetter);

    private WordKind Classify(string w)
    {
        if (!IsWord(w)) return WordKind.Other;
        if (_lexicon.Layout.Contains(w)) return WordKind.Layout;
        bool modifier = _lexicon.Modifiers.Contains(w);
        bool noun = _lexicon.NounLemma(w) is not null;
        if (noun) return modifier ? WordKind.NounOrModifier : WordKind.Noun;
        return modifier ? WordKind.Modifier : WordKind.Unknown;
    }

    private static bool NextIsNominal(WordKind[] kinds, int i) =>
        i + 1 < kinds.Length && kinds[i + 1] is WordKind.Noun or WordKind.NounOrModifier or WordKind.Unknown;

    /// <summary>True when, walking back over unknown words, a phrase opener (determiner, number, adjective, colour) is found.</summary>
    private bool OpensPhraseBefore(WordKind[] kinds, string[] words, int i)
    {
        for (int j = i - 1; j >= 0; j--)
        {
            if (kinds[j] == WordKind.Unknown) continue;
            return _lexicon.PhraseOpeners.Contains(words[j]);
        }
        return false;
    }

    private NounSelection SelectSubjects(IReadOnlyList<PromptWord> words, string[] normalised, IReadOnlyList<string> subjects)
    {
        var used = new bool[words.Count];
        var nouns = new List<(int Start, SelectedNoun Noun)>();
        var unmatched = new List<string>();
        foreach (string subject in subjects)
        {
            var parts = subject.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(Normalise).ToArray();
            int found = -1;
            for (int start = 0; parts.Length > 0 && start + parts.Length <= words.Count && found < 0; start++)
            {
                bool match = true;
                for (int p = 0; p < parts.Length && match; p++)
                    match = !used[start + p] && words[start + p].TokenPositions.Length > 0 && SameWord(normalised[start + p], parts[p]);
                if (match) found = start;
            }
            if (found < 0) { unmatched.Add(subject); continue; }
            for (int p = 0; p < parts.Length; p++) used[found + p] = true;
            nouns.Add((found, new SelectedNoun(
                string.Join(' ', Enumerable.Range(found, parts.Length).Select(x => words[x].Text)),
                Enumerable.Range(found, parts.Length).SelectMany(x => words[x].TokenPositions).ToArray(), subject)));
        }
        return new NounSelection(nouns.OrderBy(n => n.Start).Select(n => n.Noun).ToList(), NounSource.Subjects, unmatched);
    }

    private bool SameWord(string inPrompt, string inSubject)
    {
        if (inPrompt == inSubject) return true;
        string a = _lexicon.IrregularPlurals.GetValueOrDefault(inPrompt, inPrompt);
        string b = _lexicon.IrregularPlurals.GetValueOrDefault(inSubject, inSubject);
        if (a == b) return true;
        return NounLexicon.SingularCandidates(a).Contains(b) || NounLexicon.SingularCandidates(b).Contains(a);
    }
}

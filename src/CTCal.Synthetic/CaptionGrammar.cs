namespace CTCal.Synthetic;

/// <summary>
/// The caption grammar of the synthetic world:
/// <code>
/// caption  := np ( "and" np )?              binding   ("a red circle and a blue square")
///           | count colour plural-noun      counting  ("three green triangles")
///           | np relation np                spatial   ("a yellow star to the left of a purple square")
/// np       := ("a" | "an") colour noun
/// count    := "two" | "three"
/// relation := "to the left of" | "to the right of" | "above" | "below"
/// </code>
/// </summary>
public static class CaptionGrammar
{
    private static readonly string[] CountWords = ["zero", "one", "two", "three"];

    /// <summary>The caption phrase of a relation.</summary>
    public static string RelationPhrase(SpatialRelation relation) => relation switch
    {
        SpatialRelation.LeftOf => "to the left of",
        SpatialRelation.RightOf => "to the right of",
        SpatialRelation.Above => "above",
        SpatialRelation.Below => "below",
        _ => throw new ArgumentOutOfRangeException(nameof(relation), relation, "unknown relation"),
    };

    /// <summary>The caption of a spec.</summary>
    public static string Caption(SceneSpec spec) => spec.Category switch
    {
        PromptCategory.Binding => string.Join(" and ", spec.Objects.Select(NounPhrase)),
        PromptCategory.Counting => $"{CountWords[spec.Objects[0].Count]} {Palette.Word(spec.Objects[0].Color)} {Shapes.PluralNoun(spec.Objects[0].Shape)}",
        _ => $"{NounPhrase(spec.Objects[0])} {RelationPhrase(spec.Relation!.Value)} {NounPhrase(spec.Objects[1])}",
    };

    /// <summary>
    /// The subject words (nouns) as they appear in the caption, in order, without repeats: what the trainer looks up
    /// among the prompt's tokens.
    /// </summary>
    public static IReadOnlyList<string> Subjects(SceneSpec spec) =>
        spec.Objects.Select(o => o.Count > 1 ? Shapes.PluralNoun(o.Shape) : Shapes.Noun(o.Shape)).Distinct().ToArray();

    /// <summary>Parses a caption of this grammar; throws <see cref="FormatException"/> naming the caption otherwise.</summary>
    public static SceneSpec Parse(string caption)
    {
        ArgumentNullException.ThrowIfNull(caption);
        string[] words = caption.Trim().ToLowerInvariant().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        try
        {
            int countIndex = Array.IndexOf(CountWords, words.Length == 3 ? words[0] : "");
            if (countIndex >= 2)
            {
                var counted = Shapes.Parse(words[2]);
                Expect(words[2] == Shapes.PluralNoun(counted), $"'{words[2]}' must be plural after '{words[0]}'");
                return SceneSpec.Counting(Palette.Parse(words[1]), counted, countIndex);
            }

            int pos = 0;
            var first = ReadNounPhrase(words, ref pos);
            if (pos == words.Length) return SceneSpec.Binding(first);
            if (words[pos] == "and")
            {
                pos++;
                var second = ReadNounPhrase(words, ref pos);
                Expect(pos == words.Length, "text after the second object");
                return SceneSpec.Binding(first, second);
            }
            SpatialRelation? relation = null;
            foreach (var r in Enum.GetValues<SpatialRelation>())
            {
                string[] phrase = RelationPhrase(r).Split(' ');
                if (words.Skip(pos).Take(phrase.Length).SequenceEqual(phrase))
                {
                    relation = r;
                    pos += phrase.Length;
                    break;
                }
            }
            Expect(relation is not null, $"unknown word '{words[pos]}' after the first object");
            var other = ReadNounPhrase(words, ref pos);
            Expect(pos == words.Length, "text after the second object");
            return SceneSpec.Spatial(first, relation!.Value, other);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or IndexOutOfRangeException)
        {
            throw new FormatException($"caption '{caption}' does not follow the synthetic grammar: {e.Message}", e);
        }
    }

    private static string NounPhrase(ObjectSpec o)
    {
        string colour = Palette.Word(o.Color);
        string article = "aeiou".Contains(colour[0]) ? "an" : "a";
        return $"{article} {colour} {Shapes.Noun(o.Shape)}";
    }

    private static ObjectSpec ReadNounPhrase(string[] words, ref int pos)
    {
        Expect(pos + 3 <= words.Length, "caption ends inside an object phrase");
        Expect(words[pos] is "a" or "an", $"expected 'a'/'an', got '{words[pos]}'");
        var color = Palette.Parse(words[pos + 1]);
        string noun = words[pos + 2];
        var shape = Shapes.Parse(noun);
        Expect(noun == Shapes.Noun(shape), $"'{noun}' must be singular after '{words[pos]}'");
        pos += 3;
        return new ObjectSpec(color, shape);
    }

    private static void Expect(bool condition, string message)
    {
        if (!condition) throw new FormatException(message);
    }
}

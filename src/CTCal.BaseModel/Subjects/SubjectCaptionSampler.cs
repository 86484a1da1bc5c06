using CTCal.Core.Text;
using CTCal.Synthetic;

namespace CTCal.BaseModel.Subjects;

/// <summary>A caption and its subjects (the training pairs of the subject model).</summary>
public sealed record LabelledCaption(string Caption, IReadOnlyList<string> Subjects);

/// <summary>
/// Labelled captions for the subject model: the synthetic world's captions with their known subjects
/// (<see cref="CaptionGrammar.Subjects"/>), and captions from templates over the lexicon's nouns in everyday phrasing
/// (determiners, colours, sizes, counts, relations, verbs, "a photo of ...", "... in the background"), whose subjects are
/// the nouns put into them. Deterministic for a seed.
/// </summary>
public sealed class SubjectCaptionSampler
{
    private static readonly string[] Colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "brown", "pink", "grey", "golden"];
    private static readonly string[] Adjectives = ["small", "large", "big", "tiny", "old", "young", "wooden", "shiny", "fluffy", "tall", "round", "cute", "happy", "dark", "bright", "empty"];
    private static readonly string[] Counts = ["two", "three", "four", "five", "several", "many", "some"];
    private static readonly string[] Determiners = ["a", "the", "one", "this", "my"];
    private static readonly string[] Relations = ["on top of", "to the left of", "to the right of", "next to", "behind", "in front of", "under", "above", "below", "beside", "near", "inside", "on", "in", "with", "at the bottom of", "in the middle of"];
    private static readonly string[] Verbs = ["sitting on", "standing next to", "holding", "lying on", "looking at", "riding", "eating", "playing with", "jumping over", "walking past", "sleeping under", "carrying"];
    private static readonly string[] Openers = ["a photo of", "a picture of", "an image of", "a painting of", "a close-up of", "a drawing of"];
    private static readonly string[] Closers = ["in the background", "on the left", "on the right side", "at the top", "in the corner", "in the distance", "from above"];

    private readonly string[] _nouns;
    private readonly Dictionary<string, string> _plurals;
    private readonly Random _rng;

    /// <summary>Samples from <paramref name="lexicon"/>'s nouns (those that are not also modifiers or layout words).</summary>
    public SubjectCaptionSampler(NounLexicon lexicon, int seed)
    {
        ArgumentNullException.ThrowIfNull(lexicon);
        _nouns = lexicon.Nouns.Where(n => !lexicon.Modifiers.Contains(n) && !lexicon.Layout.Contains(n) && n.All(char.IsLetter))
            .OrderBy(n => n, StringComparer.Ordinal).ToArray();
        _plurals = _nouns.ToDictionary(n => n, SubjectVocabulary.Plural, StringComparer.Ordinal);
        foreach (var (plural, singular) in lexicon.IrregularPlurals)
        {
            if (_plurals.ContainsKey(singular)) _plurals[singular] = plural;
        }
        _rng = new Random(seed);
    }

    /// <summary>The nouns the templates use.</summary>
    public IReadOnlyList<string> Nouns => _nouns;

    /// <summary>The synthetic world's training captions and, separately, its evaluation prompts whose captions are not
    /// among the training ones (held out).</summary>
    public static (IReadOnlyList<LabelledCaption> Train, IReadOnlyList<LabelledCaption> HeldOut) SyntheticWorld(ulong seed, int trainCount)
    {
        var world = CTCal.Synthetic.SyntheticWorld.Create(new SyntheticWorldOptions { Seed = seed, TrainCount = trainCount });
        var train = world.TrainRecords.Select(r => new LabelledCaption(r.Caption, r.Subjects)).ToArray();
        var seen = train.Select(t => t.Caption).ToHashSet(StringComparer.Ordinal);
        var heldOut = world.EvalPrompts.Where(p => !seen.Contains(p.Prompt)).Select(p => new LabelledCaption(p.Prompt, p.Subjects))
            .DistinctBy(p => p.Caption).ToArray();
        return (train, heldOut);
    }

    /// <summary>One template caption with its subjects.</summary>
    public LabelledCaption Next()
    {
        var subjects = new List<string>();
        string Phrase()
        {
            string noun = Pick(_nouns);
            string caption;
            switch (_rng.Next(4))
            {
                case 0:
                    caption = $"{Pick(Determiners)} {noun}";
                    break;
                case 1:
                    caption = $"{Pick(Determiners)} {Pick(Colours)} {noun}";
                    break;
                case 2:
                    caption = $"{Pick(Determiners)} {Pick(Adjectives)} {Pick(Colours)} {noun}";
                    break;
                default:
                    noun = _plurals[noun];
                    caption = $"{Pick(Counts)} {(_rng.Next(2) == 0 ? Pick(Colours) + " " : "")}{noun}";
                    break;
            }
            if (!subjects.Contains(noun, StringComparer.Ordinal)) subjects.Add(noun);
            return caption;
        }

        string text = _rng.Next(5) switch
        {
            0 => Phrase(),
            1 => $"{Phrase()} and {Phrase()}",
            2 => $"{Phrase()} {Pick(Relations)} {Phrase()}",
            3 => $"{Phrase()} {Pick(Verbs)} {Phrase()}",
            _ => $"{Phrase()}, {Phrase()} and {Phrase()}",
        };
        if (_rng.Next(4) == 0) text = $"{Pick(Openers)} {text}";
        if (_rng.Next(4) == 0) text = $"{text} {Pick(Closers)}";
        return new LabelledCaption(text, subjects);
    }

    private string Pick(string[] items) => items[_rng.Next(items.Length)];
}

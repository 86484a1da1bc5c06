using CsCheck;
using CTCal.Synthetic;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>CaptionGrammar.Parse: every caption the grammar makes parses back to its spec; anything else gives a spec or FormatException.</summary>
public sealed class CaptionGrammarFuzzTests
{
    private static readonly Type[] Documented = [typeof(FormatException)];

    private static readonly Lazy<SceneSpec[]> AllSpecs = new(() => SyntheticWorld.EnumerateGroups().SelectMany(g => g).ToArray());

    private static readonly string[] Vocabulary =
    [
        "a", "an", "and", "two", "three", "zero", "one", "to", "the", "left", "right", "of", "above", "below",
        "red", "green", "blue", "yellow", "purple", "orange", "circle", "circles", "square", "squares", "triangle",
        "triangles", "star", "stars", "RED", "Circle", "", " ", "\t", "\u00a0", "ı", "İ", "\ud800", "🎉", "a\u0301",
    ];

    [Fact]
    public void Every_grammar_caption_parses_back_to_its_spec()
    {
        Gen.Int[0, AllSpecs.Value.Length - 1].Run(i =>
        {
            var spec = AllSpecs.Value[i];
            string caption = CaptionGrammar.Caption(spec);
            var parsed = FuzzBounds.Check(() => CaptionGrammar.Parse(caption), caption, []).Value!;
            Assert.Equal(spec, parsed);
            Assert.Equal(caption, CaptionGrammar.Caption(parsed));
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Word_level_mutations_parse_or_throw_FormatException()
    {
        var edit = Gen.Select(Gen.Int[0, 3], Gen.Int[0, 20], Gen.Int[0, Vocabulary.Length - 1]);
        Gen.Select(Gen.Int[0, AllSpecs.Value.Length - 1], edit.Array[1, 4]).Run((i, edits) =>
        {
            var words = CaptionGrammar.Caption(AllSpecs.Value[i]).Split(' ').ToList();
            foreach (var (kind, at, w) in edits)
            {
                int pos = words.Count == 0 ? 0 : at % words.Count;
                switch (kind)
                {
                    case 0: if (words.Count > 0) words[pos] = Vocabulary[w]; break;
                    case 1: words.Insert(Math.Min(at, words.Count), Vocabulary[w]); break;
                    case 2: if (words.Count > 0) words.RemoveAt(pos); break;
                    default: words = words.Take(pos).ToList(); break;
                }
            }
            string caption = string.Join(' ', words);
            var outcome = FuzzBounds.Check(() => CaptionGrammar.Parse(caption), FuzzBounds.Describe(caption), Documented);
            // Anything accepted must be a grammar caption up to case, spacing and the article (the grammar allows "a" | "an").
            if (outcome.Succeeded) Assert.Equal(Canonical(CaptionGrammar.Caption(outcome.Value!)), Canonical(caption));
        }, iter: FuzzBounds.Iterations);
    }

    private static string Canonical(string caption) => string.Join(' ',
        caption.Trim().ToLowerInvariant().Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(w => w == "an" ? "a" : w));

    [Fact]
    public void Arbitrary_strings_parse_or_throw_FormatException()
    {
        Gen.OneOf(Gen.String, Gen.String[Gen.Char["aenrdtwohlifgubcsqpy \t"], 0, 80]).Run(caption =>
        {
            FuzzBounds.Check(() => CaptionGrammar.Parse(caption), FuzzBounds.Describe(caption), Documented);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("caption-grammar", "*.txt"))
        {
            bool expectValid = Path.GetFileName(file).StartsWith("valid.", StringComparison.Ordinal);
            string caption = File.ReadAllText(file).TrimEnd('\n');
            var outcome = FuzzBounds.Check(() => CaptionGrammar.Parse(caption), file, Documented);
            Assert.True(outcome.Succeeded == expectValid, $"{file}: {outcome.Error?.Message ?? "parsed"}");
        }
    }
}

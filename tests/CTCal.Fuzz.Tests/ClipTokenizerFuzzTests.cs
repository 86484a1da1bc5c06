using System.Text;
using CsCheck;
using CTCal.Core.Text;
using CTCal.Tests;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>Loads the real CLIP vocabulary (~1 MB) once for the tokenizer fuzz tests.</summary>
public sealed class ClipTokenizerFixture
{
    public ClipTokenizer Tokenizer { get; } = ClipTokenizer.FromFiles(
        Path.Combine(TestPaths.Fixtures, "clip-tokenizer", "vocab.json"), Path.Combine(TestPaths.Fixtures, "clip-tokenizer", "merges.txt"));
}

/// <summary>
/// ClipTokenizer: Encode/EncodeChunks of arbitrary Unicode prompts (control characters, lone surrogates, astral characters,
/// specials, very long prompts) always give well-formed encodings; FromFiles on malformed vocab.json / merges.txt gives a
/// tokenizer or <see cref="InvalidDataException"/>.
/// </summary>
public sealed class ClipTokenizerFuzzTests(ClipTokenizerFixture fixture) : IClassFixture<ClipTokenizerFixture>, IDisposable
{
    private readonly TempFolder _temp = new("ctcal-fuzz-tok");

    public void Dispose() => _temp.Dispose();

    private static readonly Gen<char> InterestingChar = Gen.OneOf(
        Gen.Char, Gen.Char.AlphaNumeric, Gen.Char['\0', '\u001f'], Gen.Char['\ud800', '\udfff'], Gen.Char[" \t\n\r\u00a0\u2028\u3000\u001c"],
        Gen.Char["'<|>!?.,-_"], Gen.Char["ǅİßﬁΣσςÅ"]);

    private static readonly Gen<string> Word = Gen.OneOf(
        Gen.String[Gen.Char.AlphaNumeric, 1, 12],
        Gen.OneOf("<|startoftext|>", "<|endoftext|>", "'s", "'ll", "don't", "🎉", "👩‍👩", "漢字", "İstanbul", "ǅ", "\ud83d", "\udc00x", "a\u0301"),
        Gen.String[InterestingChar, 1, 8]);

    /// <summary>Prompts of words and separators, up to a few thousand characters, plus long runs.</summary>
    private static readonly Gen<string> Prompt = Gen.OneOf(
        Gen.String[InterestingChar, 0, 200],
        Word.Array[0, 120].Select(w => string.Join(" ", w)),
        Gen.Select(Word, Gen.Int[1, 3000]).Select((w, n) => string.Concat(Enumerable.Repeat(w, n))),
        Gen.String);

    /// <summary>
    /// Tokenizing allocates per piece and token (measured 60-700 bytes per prompt character per call, most for runs of one-character pieces), so the bound is
    /// linear: 64 MiB plus 4 KiB per character (for the three calls together). Super-linear growth still fails it.
    /// </summary>
    private static long AllocationBound(string prompt) => FuzzBounds.AllocationBound + 4096L * prompt.Length;

    private static void CheckEncoding(ClipTokenizer tokenizer, string prompt, ClipEncoding e, bool chunk, bool denseIds = true)
    {
        Assert.Equal(ClipTokenizer.MaxLength, e.InputIds.Length);
        Assert.InRange(e.TokenCount, 0, ClipTokenizer.MaxPromptTokens);
        Assert.Equal(tokenizer.BosId, e.InputIds[0]);
        Assert.Equal(tokenizer.EosId, e.InputIds[e.EosPosition]);
        // The real vocabulary has dense ids 0..49407; a mutated one may leave gaps, but ids are never negative.
        Assert.All(e.InputIds, id => Assert.InRange(id, 0, denseIds ? tokenizer.VocabularySize - 1 : int.MaxValue));
        var positions = new HashSet<int>();
        foreach (var w in e.Words)
        {
            Assert.True(w.CharStart >= 0 && w.CharLength > 0 && w.CharStart + w.CharLength <= prompt.Length, $"word span {w.CharStart}+{w.CharLength}");
            Assert.Equal(prompt.Substring(w.CharStart, w.CharLength), w.Text);
            foreach (int p in w.TokenPositions)
            {
                Assert.InRange(p, 1, e.TokenCount);
                Assert.True(positions.Add(p), $"position {p} claimed twice");
            }
            if (chunk) Assert.NotEmpty(w.TokenPositions);
        }
        Assert.Equal(e.TokenCount, positions.Count);
    }

    [Fact]
    public void Encode_arbitrary_prompts_gives_well_formed_77_id_encodings()
    {
        var tokenizer = fixture.Tokenizer;
        Prompt.Run(prompt =>
        {
            var outcome = FuzzBounds.Check(() => (tokenizer.Encode(prompt), tokenizer.EncodeChunks(prompt), tokenizer.EncodeWithoutSpecials(prompt)),
                FuzzBounds.Describe(prompt), [], AllocationBound(prompt));
            var (single, chunks, raw) = outcome.Value;
            CheckEncoding(tokenizer, prompt, single, chunk: false);
            Assert.Equal(raw.Count > ClipTokenizer.MaxPromptTokens, single.Truncated);
            Assert.Equal(raw.Take(ClipTokenizer.MaxPromptTokens), single.InputIds.Skip(1).Take(single.TokenCount));
            foreach (var c in chunks) CheckEncoding(tokenizer, prompt, c, chunk: true);
            Assert.Equal(raw, chunks.SelectMany(c => c.InputIds.Skip(1).Take(c.TokenCount)));
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Encode_very_long_prompts_stays_within_bounds()
    {
        // 32k to 128k characters: the time and allocation bounds catch super-linear BPE or pre-tokenizer work.
        var tokenizer = fixture.Tokenizer;
        Gen.Select(Word.Array[1, 8], Gen.Int[32_768, 131_072]).Run((words, length) =>
        {
            var sb = new StringBuilder(length + 64);
            for (int i = 0; sb.Length < length; i++) sb.Append(words[i % words.Length]).Append(i % 7 == 0 ? "" : " ");
            string prompt = sb.ToString();
            var e = FuzzBounds.Check(() => tokenizer.Encode(prompt), FuzzBounds.Describe(prompt, 80), [], AllocationBound(prompt)).Value!;
            CheckEncoding(tokenizer, prompt, e, chunk: false);
        }, iter: Math.Max(2, FuzzBounds.Iterations / 50));
    }

    [Theory]
    [InlineData("a")]
    [InlineData("ab")]
    [InlineData("!?")]
    public void Long_unbroken_runs_encode_within_the_time_bound(string unit)
    {
        // Regression: a 160k-character letter run was one BPE piece, and BPE merging is quadratic in a piece's length
        // (4 s for "ab" x 80k, 97 s for "ab" x 320k before runs were cut at MaxPieceLength characters; 0.2 s for 640k
        // characters after). 640k characters keep the old behaviour far outside the hang detector's 10 s.
        string prompt = string.Concat(Enumerable.Repeat(unit, 640_000 / unit.Length));
        var e = FuzzBounds.Check(() => fixture.Tokenizer.Encode(prompt), $"'{unit}' x {prompt.Length / unit.Length}", [], AllocationBound(prompt)).Value!;
        CheckEncoding(fixture.Tokenizer, prompt, e, chunk: false);
        Assert.True(e.Truncated);
        Assert.Equal(prompt.Length, e.Words.Sum(w => w.CharLength));
        Assert.All(e.Words, w => Assert.InRange(w.CharLength, 1, ClipTokenizer.MaxPieceLength));
    }

    private static readonly Lazy<(string Vocab, string Merges)> SmallSeeds = new(() =>
        (File.ReadAllText(Path.Combine(Corpus.Folder("clip-tokenizer"), "vocab.small.json")),
         File.ReadAllText(Path.Combine(Corpus.Folder("clip-tokenizer"), "merges.small.txt"))));

    /// <summary>FromFiles, then (when it builds) an encode of a few prompts: the only exception is InvalidDataException.</summary>
    private Outcome<int> LoadAndEncode(byte[] vocab, byte[] merges, string description)
    {
        string vocabPath = _temp.Write(vocab, ".json");
        string mergesPath = _temp.Write(merges, ".txt");
        try
        {
            return FuzzBounds.Check(() =>
            {
                var tokenizer = ClipTokenizer.FromFiles(vocabPath, mergesPath);
                foreach (string prompt in new[] { "a red circle and the blue square", "the café 🎉", "", "<|endoftext|> the" })
                    CheckEncoding(tokenizer, prompt, tokenizer.Encode(prompt), chunk: false, denseIds: false);
                return tokenizer.VocabularySize;
            }, description, [typeof(InvalidDataException)]);
        }
        finally
        {
            File.Delete(vocabPath);
            File.Delete(mergesPath);
        }
    }

    [Fact]
    public void FromFiles_with_mutated_vocab_json_loads_or_throws_InvalidDataException()
    {
        JsonMutator.Mutations().Run(mutations =>
        {
            string vocab = JsonMutator.Apply(SmallSeeds.Value.Vocab, mutations);
            LoadAndEncode(Encoding.UTF8.GetBytes(vocab), Encoding.UTF8.GetBytes(SmallSeeds.Value.Merges),
                $"vocab {FuzzBounds.Describe(vocab, 120)} ({string.Join(", ", mutations)})");
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void FromFiles_with_mutated_merges_txt_loads_or_throws_InvalidDataException()
    {
        var lineEdits = Gen.OneOf(ByteMutator.Mutations().Select(m => (Func<string, string>)(text =>
                Encoding.UTF8.GetString(ByteMutator.Apply(Encoding.UTF8.GetBytes(text), m)))),
            Gen.Select(Gen.Int[0, 20], Gen.OneOf("x y", "", " ", "a", "a  b", "a b c", "zz qq", "<|endoftext|> a", "t h", "\ud800 a", "é x", "\t", "#version: 0.2"))
                .Select((line, text) => (Func<string, string>)(merges =>
                {
                    var lines = merges.Split('\n').ToList();
                    lines.Insert(Math.Min(line, lines.Count), text);
                    return string.Join('\n', lines);
                })));
        lineEdits.Array[1, 3].Run(edits =>
        {
            string merges = edits.Aggregate(SmallSeeds.Value.Merges, (text, edit) => edit(text));
            LoadAndEncode(Encoding.UTF8.GetBytes(SmallSeeds.Value.Vocab), Encoding.UTF8.GetBytes(merges), $"merges {FuzzBounds.Describe(merges)}");
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("clip-tokenizer", "prompt.*.txt"))
        {
            string prompt = File.ReadAllText(file);
            CheckEncoding(fixture.Tokenizer, prompt, FuzzBounds.Check(() => fixture.Tokenizer.Encode(prompt), file, []).Value!, chunk: false);
        }
        var (vocab, merges) = SmallSeeds.Value;
        Assert.True(LoadAndEncode(Encoding.UTF8.GetBytes(vocab), Encoding.UTF8.GetBytes(merges), "seed").Succeeded);
        foreach (string file in Directory.GetFiles(Corpus.Folder("clip-tokenizer"), "vocab.crash-*")
                     .Concat(Directory.GetFiles(Corpus.Folder("clip-tokenizer"), "merges.crash-*")).Order(StringComparer.Ordinal))
        {
            // vocab.crash-*.json pairs with the seed merges; merges.crash-*.txt with the seed vocabulary.
            bool isVocab = Path.GetFileName(file).StartsWith("vocab.", StringComparison.Ordinal);
            byte[] bytes = File.ReadAllBytes(file);
            var outcome = LoadAndEncode(isVocab ? bytes : Encoding.UTF8.GetBytes(vocab), isVocab ? Encoding.UTF8.GetBytes(merges) : bytes, file);
            Assert.False(outcome.Succeeded, $"{file} loaded");
        }
    }
}

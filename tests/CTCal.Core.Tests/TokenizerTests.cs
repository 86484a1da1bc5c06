using System.Text.Json;
using CTCal.Core.Text;
using Xunit;

namespace CTCal.Core.Tests;

public sealed class TokenizerTests(TokenizerFixture fixture) : IClassFixture<TokenizerFixture>
{
    private readonly ClipTokenizer _tok = fixture.Sd1;

    private static readonly Lazy<JsonDocument> Cases = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(CTCal.Tests.TestPaths.Fixtures, "clip-tokenizer", "token_ids.json"))));

    public static TheoryData<int> CaseIndices()
    {
        var data = new TheoryData<int>();
        int n = Cases.Value.RootElement.GetProperty("cases").GetArrayLength();
        for (int i = 0; i < n; i++) data.Add(i);
        return data;
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Reproduces_reference_ids(int index)
    {
        var c = Cases.Value.RootElement.GetProperty("cases")[index];
        string prompt = c.GetProperty("prompt").GetString()!;
        int[] bpe = Ints(c.GetProperty("bpe_ids"));

        Assert.Equal(bpe, _tok.EncodeWithoutSpecials(prompt));

        var sd1 = _tok.Encode(prompt);
        Assert.Equal(Ints(c.GetProperty("input_ids_sd1_pad_eot")), sd1.InputIds);
        Assert.Equal(c.GetProperty("truncated").GetBoolean(), sd1.Truncated);
        Assert.Equal(Math.Min(bpe.Length, 75), sd1.TokenCount);

        var sd2 = _tok.Encode(prompt, padId: 0);
        Assert.Equal(Ints(c.GetProperty("input_ids_sd2_pad_zero")), sd2.InputIds);
    }

    [Fact]
    public void Fixture_header_matches_the_tokenizer()
    {
        var root = Cases.Value.RootElement;
        Assert.Equal(root.GetProperty("sot").GetInt32(), _tok.BosId);
        Assert.Equal(root.GetProperty("eot").GetInt32(), _tok.EosId);
        Assert.Equal(ClipTokenizer.MaxLength, root.GetProperty("max_length").GetInt32());
        Assert.Equal(49407, _tok.PadId);
        Assert.Equal(49408, _tok.VocabularySize);
    }

    [Fact]
    public void Reports_word_positions()
    {
        const string prompt = "a red cube on top of a blue sphere";
        var enc = _tok.Encode(prompt);
        string[] expectedWords = ["a", "red", "cube", "on", "top", "of", "a", "blue", "sphere"];
        Assert.Equal(expectedWords, enc.Words.Select(w => w.Text));
        for (int i = 0; i < expectedWords.Length; i++)
        {
            var w = enc.Words[i];
            Assert.Equal([i + 1], w.TokenPositions); // one token per word here; BOS is position 0
            Assert.Equal(expectedWords[i], prompt.Substring(w.CharStart, w.CharLength));
        }
        Assert.Equal([3], enc.Words.Single(w => w.Text == "cube").TokenPositions);
        Assert.Equal([9], enc.Words.Single(w => w.Text == "sphere").TokenPositions);
        Assert.Equal(10, enc.EosPosition);
        Assert.Equal(_tok.EosId, enc.InputIds[enc.EosPosition]);
    }

    [Fact]
    public void Words_keep_original_text_and_offsets_and_split_punctuation()
    {
        const string prompt = "  A Giraffe,  an ASTRONAUT's helmet";
        var enc = _tok.Encode(prompt);
        Assert.Equal(["A", "Giraffe", ",", "an", "ASTRONAUT", "'s", "helmet"], enc.Words.Select(w => w.Text));
        foreach (var w in enc.Words) Assert.Equal(w.Text, prompt.Substring(w.CharStart, w.CharLength));
        Assert.Equal(2, enc.Words[0].CharStart);
        // Positions are consecutive, start after BOS, and every kept token belongs to exactly one word.
        int[] all = enc.Words.SelectMany(w => w.TokenPositions).ToArray();
        Assert.Equal(Enumerable.Range(1, enc.TokenCount), all);
        // "giraffe" is more than one BPE token: its positions map back to exactly its ids.
        var giraffe = enc.Words[1];
        Assert.Equal(_tok.EncodeWithoutSpecials("giraffe"), giraffe.TokenPositions.Select(p => enc.InputIds[p]));
    }

    [Fact]
    public void Casing_and_whitespace_do_not_change_ids()
    {
        Assert.Equal(_tok.Encode("a red cube").InputIds, _tok.Encode("  A\tRED \n\n CUBE  ").InputIds);
    }

    [Fact]
    public void Non_ascii_text_uses_byte_level_tokens()
    {
        // Every character reaches the BPE as UTF-8 bytes, so nothing is dropped: "café" is one vocabulary entry.
        var ids = _tok.EncodeWithoutSpecials("café");
        Assert.Single(ids);
        Assert.Equal(ids, _tok.EncodeWithoutSpecials("CAFÉ"));
        var emoji = _tok.Encode("a 🙂 cat");
        Assert.Equal(["a", "🙂", "cat"], emoji.Words.Select(w => w.Text));
        Assert.All(emoji.Words, w => Assert.NotEmpty(w.TokenPositions));
    }

    [Fact]
    public void Long_prompt_is_truncated_to_75_tokens_and_reports_dropped_words()
    {
        string sentence = "the quick brown fox jumps over the lazy dog "; // 9 tokens
        string prompt = string.Concat(Enumerable.Repeat(sentence, 10)); // 90 tokens
        var all = _tok.EncodeWithoutSpecials(prompt);
        Assert.Equal(90, all.Count);

        var enc = _tok.Encode(prompt);
        Assert.True(enc.Truncated);
        Assert.Equal(75, enc.TokenCount);
        Assert.Equal(ClipTokenizer.MaxLength, enc.InputIds.Length);
        Assert.Equal(_tok.BosId, enc.InputIds[0]);
        Assert.Equal(all.Take(75), enc.InputIds[1..76]);
        Assert.Equal(_tok.EosId, enc.InputIds[76]);
        Assert.Equal(90, enc.Words.Count);
        Assert.All(enc.Words.Take(75), w => Assert.NotEmpty(w.TokenPositions));
        Assert.All(enc.Words.Skip(75), w => Assert.Empty(w.TokenPositions));
    }

    [Fact]
    public void Chunks_cover_a_long_prompt_in_order()
    {
        string prompt = string.Join(", ", Enumerable.Range(0, 40).Select(i => $"red cube {i % 7}"));
        var all = _tok.EncodeWithoutSpecials(prompt);
        Assert.True(all.Count > 150 && all.Count <= 225, $"{all.Count} tokens");

        var chunks = _tok.EncodeChunks(prompt, padId: 0);
        Assert.Equal((all.Count + 74) / 75, chunks.Count);
        var rebuilt = new List<int>();
        foreach (var chunk in chunks)
        {
            Assert.Equal(ClipTokenizer.MaxLength, chunk.InputIds.Length);
            Assert.False(chunk.Truncated);
            Assert.Equal(_tok.BosId, chunk.InputIds[0]);
            Assert.Equal(_tok.EosId, chunk.InputIds[chunk.EosPosition]);
            Assert.All(chunk.InputIds[(chunk.EosPosition + 1)..], id => Assert.Equal(0, id));
            rebuilt.AddRange(chunk.InputIds[1..chunk.EosPosition]);
            // Each chunk's words point at their own tokens.
            foreach (var w in chunk.Words)
            {
                Assert.NotEmpty(w.TokenPositions);
                var ids = w.TokenPositions.Select(p => chunk.InputIds[p]).ToArray();
                Assert.Equal(_tok.EncodeWithoutSpecials(w.Text), ids);
            }
        }
        Assert.Equal(all, rebuilt);
        Assert.Equal(75, chunks[0].TokenCount);
        Assert.Equal(all.Count - 75 * (chunks.Count - 1), chunks[^1].TokenCount);
    }

    [Fact]
    public void Short_and_empty_prompts_give_one_chunk()
    {
        var chunks = _tok.EncodeChunks("a red cube");
        Assert.Single(chunks);
        Assert.Equal(_tok.Encode("a red cube").InputIds, chunks[0].InputIds);

        var empty = _tok.EncodeChunks("");
        Assert.Single(empty);
        Assert.Equal(0, empty[0].TokenCount);
        Assert.Equal([_tok.BosId, _tok.EosId, _tok.EosId], empty[0].InputIds[..3]);
        Assert.Empty(_tok.Encode("   ").Words);
    }

    [Fact]
    public void Concurrent_encoding_gives_the_sequential_result()
    {
        string[] prompts = Enumerable.Range(0, 64).Select(i => $"a photo of {i} red cubes and {i % 5} blue spheres, trending").ToArray();
        int[][] sequential = prompts.Select(p => _tok.Encode(p).InputIds).ToArray();
        var parallel = new int[prompts.Length][];
        Parallel.For(0, prompts.Length, i => parallel[i] = _tok.Encode(prompts[i]).InputIds);
        Assert.Equal(sequential, parallel);
    }

    [Fact]
    public void Loads_a_diffusers_tokenizer_folder()
    {
        var tok = ClipTokenizer.FromFolder(Path.Combine(CTCal.Tests.TestPaths.Fixtures, "tiny-sd1", "tokenizer"));
        Assert.Equal(49406, tok.BosId);
        Assert.Equal(49407, tok.EosId);
        Assert.Equal(49407, tok.PadId); // special_tokens_map.json: pad_token <|endoftext|>
        Assert.Equal(_tok.Encode("A photo of an astronaut riding a horse on Mars.").InputIds,
            tok.Encode("A photo of an astronaut riding a horse on Mars.").InputIds);
    }

    [Fact]
    public void Folder_pad_token_bang_selects_id_zero()
    {
        string src = Path.Combine(CTCal.Tests.TestPaths.Fixtures, "clip-tokenizer");
        string dir = CTCal.Tests.TestPaths.NewTempDir();
        try
        {
            File.Copy(Path.Combine(src, "vocab.json"), Path.Combine(dir, "vocab.json"));
            File.Copy(Path.Combine(src, "merges.txt"), Path.Combine(dir, "merges.txt"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"pad_token": {"content": "!", "lstrip": false}}""");
            var tok = ClipTokenizer.FromFolder(dir);
            Assert.Equal(0, tok.PadId);
            Assert.Equal(0, tok.Encode("a cat").InputIds[^1]);

            File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), """{"pad_token": "<|notatoken|>"}""");
            var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Contains("special_tokens_map.json", e.Message);
            Assert.Contains("pad_token", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Missing_or_bad_files_name_the_file()
    {
        string dir = CTCal.Tests.TestPaths.NewTempDir();
        try
        {
            var missing = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Contains("vocab.json", missing.Message);

            File.WriteAllText(Path.Combine(dir, "vocab.json"), """{"a": 0, "b": 1}""");
            File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\n");
            var notClip = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Contains("vocab.json", notClip.Message);
            Assert.Contains("<|startoftext|>", notClip.Message);

            File.WriteAllText(Path.Combine(dir, "vocab.json"), """{"a": 0, "b": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}""");
            File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\nabc\n");
            var badMerges = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Contains("merges.txt: line 3", badMerges.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

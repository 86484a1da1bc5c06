using System.Text;
using System.Text.Json;
using CTCal.Core.IO;
using CTCal.Core.Text;
using CTCal.Synthetic;
using CTCal.Trainer.Training;

namespace CTCal.BaseModel;

/// <summary>
/// A CLIP-format BPE vocabulary for the synthetic world: the 256 byte-level symbols (CLIP's bytes_to_unicode order) and
/// their <c>&lt;/w&gt;</c> word-final forms, so any text still tokenizes; one whole-word token per word the caption grammar
/// can produce (built by chains of merges, plus their intermediate symbols); then <c>&lt;|startoftext|&gt;</c> and
/// <c>&lt;|endoftext|&gt;</c>. Loadable by <see cref="ClipTokenizer.FromFiles"/>.
/// </summary>
public sealed class WorldTokenizer
{
    private WorldTokenizer(IReadOnlyList<string> words, IReadOnlyList<string> tokens, IReadOnlyList<(string Left, string Right)> merges)
    {
        Words = words;
        Tokens = tokens;
        Merges = merges;
    }

    /// <summary>The whole words that have a single token (sorted).</summary>
    public IReadOnlyList<string> Words { get; }

    /// <summary>The vocabulary in id order.</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>The merge rules in rank order.</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }

    public int VocabularySize => Tokens.Count;
    public int BosId => Tokens.Count - 2;
    public int EosId => Tokens.Count - 1;

    /// <summary>Every word of every caption the synthetic grammar can produce (lower case, sorted).</summary>
    public static IReadOnlyList<string> GrammarWords() =>
        SyntheticWorld.EnumerateGroups().SelectMany(g => g).Select(CaptionGrammar.Caption)
            .SelectMany(c => c.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(w => w.ToLowerInvariant()).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

    /// <summary>The world's tokenizer: <see cref="GrammarWords"/> as whole-word tokens.</summary>
    public static WorldTokenizer ForSyntheticWorld() => Build(GrammarWords());

    /// <summary>Builds merges so that each of <paramref name="words"/> (lower-case a-z) becomes exactly one token.</summary>
    public static WorldTokenizer Build(IEnumerable<string> words)
    {
        var list = words.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        foreach (var w in list)
        {
            if (w.Length == 0 || !w.All(c => c is >= 'a' and <= 'z'))
                throw new ArgumentException($"world word '{w}' must be non-empty lower-case a-z", nameof(words));
        }
        var byteSymbols = ByteSymbols();
        var tokens = new List<string>(byteSymbols);
        tokens.AddRange(byteSymbols.Select(s => s + "</w>"));
        var known = new HashSet<string>(tokens, StringComparer.Ordinal);
        var merges = new List<(string, string)>();
        var ranks = new Dictionary<(string, string), int>();
        // Appending a merge (lowest priority) never changes a word that already reduces to one token: at every stage of its
        // reduction a higher-priority merge applied. So one pass, extending each word's reduction until it is one symbol, suffices.
        foreach (var word in list)
        {
            for (int guard = 0; guard < word.Length; guard++)
            {
                var symbols = Apply(word, ranks);
                if (symbols.Count == 1) break;
                var pair = (symbols[0], symbols[1]);
                ranks[pair] = merges.Count;
                merges.Add(pair);
                string merged = symbols[0] + symbols[1];
                if (known.Add(merged)) tokens.Add(merged);
            }
            if (Apply(word, ranks).Count != 1) throw new InvalidOperationException($"could not build a single token for '{word}'");
        }
        tokens.Add(ClipTokenizer.StartOfText);
        tokens.Add(ClipTokenizer.EndOfText);
        return new WorldTokenizer(list, tokens, merges);
    }

    /// <summary>BPE of one word (CLIP style: the last symbol carries <c>&lt;/w&gt;</c>; lowest-rank pair first).</summary>
    private static List<string> Apply(string word, Dictionary<(string, string), int> ranks)
    {
        var symbols = word.Select(c => c.ToString()).ToList();
        symbols[^1] += "</w>";
        while (symbols.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (ranks.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank) (best, bestRank) = (i, r);
            }
            if (best < 0) break;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
        return symbols;
    }

    /// <summary>GPT-2/CLIP bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100 onwards; in CLIP's vocabulary order.</summary>
    private static List<string> ByteSymbols()
    {
        var printable = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var set = printable.ToHashSet();
        var result = printable.Select(b => ((char)b).ToString()).ToList();
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            if (!set.Contains(b)) result.Add(((char)(256 + n++)).ToString());
        }
        return result;
    }

    /// <summary>
    /// Writes <c>vocab.json</c>, <c>merges.txt</c>, <c>special_tokens_map.json</c> and <c>tokenizer_config.json</c> into
    /// <paramref name="folder"/> (a diffusers <c>tokenizer/</c> folder), each atomically.
    /// </summary>
    public void Write(string folder)
    {
        Directory.CreateDirectory(folder);
        var vocab = new Dictionary<string, int>();
        for (int i = 0; i < Tokens.Count; i++) vocab[Tokens[i]] = i;
        AtomicFile.WriteText(Path.Combine(folder, "vocab.json"), JsonSerializer.Serialize(vocab));
        var merges = new StringBuilder("#version: 0.2\n");
        foreach (var (l, r) in Merges) merges.Append(l).Append(' ').Append(r).Append('\n');
        AtomicFile.WriteText(Path.Combine(folder, "merges.txt"), merges.ToString());
        AtomicFile.WriteText(Path.Combine(folder, "special_tokens_map.json"), """
            {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
            """);
        AtomicFile.WriteText(Path.Combine(folder, "tokenizer_config.json"), """
            {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
             "model_max_length": 77, "do_lower_case": true, "tokenizer_class": "CLIPTokenizer", "add_prefix_space": false, "errors": "replace"}
            """);
    }
}

using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace CTCal.Core.Text;

/// <summary>
/// A small GPT-2-style byte-level BPE tokenizer that CTCal builds itself from a word list (no download): the 256 byte
/// symbols, one special token (<see cref="EndOfText"/>, id 0) and merges chosen so that every listed piece (a word with or
/// without its leading space, or a punctuation run such as <c>["</c>) encodes to one token. It writes a Hugging Face
/// <c>tokenizer.json</c> (model BPE, ByteLevel pre-tokenizer and decoder) that ONNX Runtime GenAI reads, and encodes
/// text exactly as that file does (the GPT-2 split pattern, then merges by rank), so training and serving agree.
/// </summary>
public sealed partial class ByteLevelBpe
{
    /// <summary>The one special token: end of text (id 0), also the padding and beginning-of-text token.</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>The id of <see cref="EndOfText"/>.</summary>
    public const int EndOfTextId = 0;

    private static readonly char[] ByteToChar = BuildByteToChar();
    private readonly List<string> _tokens;
    private readonly Dictionary<string, int> _ids;
    private readonly List<(string Left, string Right)> _merges;
    private readonly Dictionary<(string, string), int> _ranks;

    private ByteLevelBpe(List<string> tokens, List<(string, string)> merges)
    {
        _tokens = tokens;
        _merges = merges;
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Count; i++) _ids[tokens[i]] = i;
        _ranks = new Dictionary<(string, string), int>();
        for (int i = 0; i < merges.Count; i++) _ranks[merges[i]] = i;
    }

    /// <summary>The number of tokens (ids 0 .. VocabSize-1).</summary>
    public int VocabSize => _tokens.Count;

    /// <summary>The number of merges.</summary>
    public int MergeCount => _merges.Count;

    /// <summary>
    /// Builds a tokenizer whose merges make each of <paramref name="pieces"/> one token (pieces as text, e.g. "cube",
    /// " cube", "[\""). Deterministic: the same pieces in the same order give the same file.
    /// </summary>
    public static ByteLevelBpe Build(IEnumerable<string> pieces)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        var tokens = new List<string> { EndOfText };
        tokens.AddRange(ByteToChar.Select(c => c.ToString()));
        var bpe = new ByteLevelBpe(tokens, []);
        foreach (string piece in pieces.Distinct(StringComparer.Ordinal))
        {
            if (piece.Length == 0) continue;
            var segments = bpe.Merge(ToSymbols(piece));
            while (segments.Count > 1)
            {
                // chain the current segmentation left to right: new merges rank after all earlier ones
                string left = segments[0], right = segments[1];
                bpe.AddMerge(left, right);
                segments.RemoveAt(1);
                segments[0] = left + right;
            }
        }
        return bpe;
    }

    private void AddMerge(string left, string right)
    {
        if (_ranks.ContainsKey((left, right))) return;
        _ranks[(left, right)] = _merges.Count;
        _merges.Add((left, right));
        string joined = left + right;
        if (!_ids.ContainsKey(joined))
        {
            _ids[joined] = _tokens.Count;
            _tokens.Add(joined);
        }
    }

    /// <summary>Reads a tokenizer this class wrote (<see cref="ToTokenizerJson"/>); throws naming the problem otherwise.</summary>
    public static ByteLevelBpe FromTokenizerJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var model = doc.RootElement.GetProperty("model");
        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => (p.Name, Id: p.Value.GetInt32())).OrderBy(p => p.Id).ToList();
        for (int i = 0; i < vocab.Count; i++)
        {
            if (vocab[i].Id != i) throw new InvalidDataException($"tokenizer.json: vocab ids must be 0..{vocab.Count - 1}, id {i} is missing");
        }
        var merges = new List<(string, string)>();
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            string text = m.GetString() ?? throw new InvalidDataException("tokenizer.json: a merge is not a string");
            int space = text.IndexOf(' ', StringComparison.Ordinal);
            if (space <= 0) throw new InvalidDataException($"tokenizer.json: merge '{text}' is not 'left right'");
            merges.Add((text[..space], text[(space + 1)..]));
        }
        return new ByteLevelBpe(vocab.Select(v => v.Name).ToList(), merges);
    }

    /// <summary>The token ids of <paramref name="text"/> (no special tokens added).</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        foreach (Match m in SplitPattern().Matches(text))
        {
            foreach (string symbol in Merge(ToSymbols(m.Value)))
            {
                ids.Add(_ids.TryGetValue(symbol, out int id) ? id : throw new InvalidOperationException($"symbol '{symbol}' has no id"));
            }
        }
        return ids.ToArray();
    }

    /// <summary>The text of <paramref name="ids"/> (<see cref="EndOfText"/> left out).</summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (id == EndOfTextId) continue;
            if (id < 0 || id >= _tokens.Count) throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id outside 0..{_tokens.Count - 1}");
            foreach (char c in _tokens[id]) bytes.Add((byte)Array.IndexOf(ByteToChar, c));
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>The token of <paramref name="id"/> in its byte-level spelling (a leading space is 'Ġ').</summary>
    public string TokenText(int id) => _tokens[id];

    private List<string> Merge(List<string> symbols)
    {
        while (symbols.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (_ranks.TryGetValue((symbols[i], symbols[i + 1]), out int rank) && rank < bestRank)
                {
                    bestRank = rank;
                    best = i;
                }
            }
            if (best < 0) break;
            var (left, right) = _merges[bestRank];
            // merge every occurrence of this pair, left to right (as Hugging Face's BPE does)
            var merged = new List<string>(symbols.Count);
            for (int i = 0; i < symbols.Count; i++)
            {
                if (i + 1 < symbols.Count && symbols[i] == left && symbols[i + 1] == right)
                {
                    merged.Add(left + right);
                    i++;
                }
                else
                {
                    merged.Add(symbols[i]);
                }
            }
            symbols = merged;
        }
        return symbols;
    }

    private static List<string> ToSymbols(string text) =>
        Encoding.UTF8.GetBytes(text).Select(b => ByteToChar[b].ToString()).ToList();

    /// <summary>The Hugging Face <c>tokenizer.json</c> of this tokenizer.</summary>
    public string ToTokenizerJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            w.WriteStartObject();
            w.WriteNumber("id", EndOfTextId);
            w.WriteString("content", EndOfText);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteNull("normalizer");
            WriteByteLevel(w, "pre_tokenizer", addPrefixSpace: false);
            WriteByteLevel(w, "post_processor", addPrefixSpace: false);
            WriteByteLevel(w, "decoder", addPrefixSpace: false);
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteNull("unk_token");
            w.WriteString("continuing_subword_prefix", "");
            w.WriteString("end_of_word_suffix", "");
            w.WriteBoolean("fuse_unk", false);
            w.WriteBoolean("byte_fallback", false);
            w.WriteStartObject("vocab");
            for (int i = 0; i < _tokens.Count; i++) w.WriteNumber(_tokens[i], i);
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var (left, right) in _merges) w.WriteStringValue(left + " " + right);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteByteLevel(Utf8JsonWriter w, string name, bool addPrefixSpace)
    {
        w.WriteStartObject(name);
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", addPrefixSpace);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", true);
        w.WriteEndObject();
    }

    /// <summary>The Hugging Face <c>tokenizer_config.json</c> that goes with <see cref="ToTokenizerJson"/>.</summary>
    public static string TokenizerConfigJson(int modelMaxLength) =>
        $$"""
        {
          "add_bos_token": false,
          "add_eos_token": false,
          "add_prefix_space": false,
          "bos_token": "{{EndOfText}}",
          "eos_token": "{{EndOfText}}",
          "pad_token": "{{EndOfText}}",
          "unk_token": "{{EndOfText}}",
          "clean_up_tokenization_spaces": false,
          "model_max_length": {{modelMaxLength}},
          "tokenizer_class": "GPT2Tokenizer"
        }
        """;

    // GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves, the rest to U+0100 onwards.
    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        var direct = new bool[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) direct[b] = true;
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            table[b] = direct[b] ? (char)b : (char)(256 + next++);
        }
        return table;
    }

    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex SplitPattern();
}

using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace CTCal.Core.Text;

/// <summary>
/// The CLIP byte-level BPE tokenizer used by Stable Diffusion text encoders, built on Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/> over a model folder's <c>vocab.json</c> + <c>merges.txt</c>. CLIP specifics: lower-casing
/// and whitespace cleanup (<see cref="ClipNormalizer"/>), CLIP's pre-tokenizer regex, the <c>&lt;/w&gt;</c> end-of-word
/// suffix, byte-to-unicode mapping, and the <c>&lt;|startoftext|&gt;</c> / <c>&lt;|endoftext|&gt;</c> specials.
/// Instances are immutable and can be shared between threads.
/// </summary>
public sealed class ClipTokenizer
{
    /// <summary>Context length of CLIP text encoders: BOS + 75 tokens + EOS.</summary>
    public const int MaxLength = 77;

    /// <summary>Prompt tokens that fit between BOS and EOS.</summary>
    public const int MaxPromptTokens = MaxLength - 2;

    /// <summary>Longest pre-tokenizer piece: longer letter or symbol runs are split into pieces of this many characters.</summary>
    public const int MaxPieceLength = 256;

    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";

    // openai/CLIP simple_tokenizer's pattern (re.IGNORECASE): the specials, English contractions, letter runs, single
    // digits, and runs of everything else that is not whitespace. One difference: runs are cut every MaxPieceLength
    // characters, because BPE merging is quadratic in a piece's length (a 100k-letter "word" would take minutes); no real
    // word comes near the limit, so ids differ from CLIP's only for such runs.
    private static readonly Regex PreTokenizerPattern = new(
        @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}{1," + MaxPieceLength + @"}|\p{N}|[^\s\p{L}\p{N}]{1," + MaxPieceLength + "}",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Compiled);

    private readonly BpeTokenizer _bpe;

    private ClipTokenizer(BpeTokenizer bpe, int bosId, int eosId, int padId)
    {
        _bpe = bpe;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
    }

    /// <summary>Id of <c>&lt;|startoftext|&gt;</c> (49406 in CLIP's vocabulary).</summary>
    public int BosId { get; }

    /// <summary>Id of <c>&lt;|endoftext|&gt;</c> (49407 in CLIP's vocabulary).</summary>
    public int EosId { get; }

    /// <summary>Default padding id: SD1 folders pad with <c>&lt;|endoftext|&gt;</c> (49407), SD2 folders with "!" (0).</summary>
    public int PadId { get; }

    /// <summary>Size of the vocabulary (49408 for CLIP).</summary>
    public int VocabularySize => _bpe.Vocabulary.Count;

    /// <summary>
    /// Loads <c>vocab.json</c> and <c>merges.txt</c> from a diffusers <c>tokenizer/</c> folder. The pad token comes from
    /// <c>special_tokens_map.json</c> or else <c>tokenizer_config.json</c> (<c>pad_token</c>, a string or an object with
    /// <c>content</c>); when neither names one, padding uses <c>&lt;|endoftext|&gt;</c> as transformers' CLIPTokenizer does.
    /// </summary>
    public static ClipTokenizer FromFolder(string tokenizerFolder)
    {
        ArgumentNullException.ThrowIfNull(tokenizerFolder);
        if (!Directory.Exists(tokenizerFolder))
            throw new DirectoryNotFoundException($"Tokenizer folder '{tokenizerFolder}' does not exist.");
        string vocab = Path.Combine(tokenizerFolder, "vocab.json");
        string merges = Path.Combine(tokenizerFolder, "merges.txt");
        var tokenizer = FromFiles(vocab, merges);

        string? padToken = null;
        foreach (string name in new[] { "special_tokens_map.json", "tokenizer_config.json" })
        {
            string path = Path.Combine(tokenizerFolder, name);
            if (File.Exists(path) && ReadPadToken(path) is { } token)
            {
                padToken = token;
                if (tokenizer._bpe.Vocabulary.TryGetValue(token, out int padId))
                    return new ClipTokenizer(tokenizer._bpe, tokenizer.BosId, tokenizer.EosId, padId);
                throw new InvalidDataException($"{path}: field 'pad_token': token \"{token}\" is not in {vocab}.");
            }
        }
        return tokenizer;
    }

    /// <summary>Loads the vocabulary and merges; <paramref name="padTokenId"/> defaults to the <c>&lt;|endoftext|&gt;</c> id (SD1).</summary>
    public static ClipTokenizer FromFiles(string vocabJson, string mergesTxt, int? padTokenId = null)
    {
        ArgumentNullException.ThrowIfNull(vocabJson);
        ArgumentNullException.ThrowIfNull(mergesTxt);
        if (!File.Exists(vocabJson)) throw new FileNotFoundException($"CLIP vocabulary '{vocabJson}' not found.", vocabJson);
        if (!File.Exists(mergesTxt)) throw new FileNotFoundException($"CLIP merges '{mergesTxt}' not found.", mergesTxt);

        Dictionary<string, int> vocabulary;
        try
        {
            using var stream = File.OpenRead(vocabJson);
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(stream)
                ?? throw new InvalidDataException($"{vocabJson}: expected a JSON object mapping tokens to ids, found null.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{vocabJson}: not a JSON object mapping tokens to integer ids ({e.Message}).", e);
        }
        foreach (var (token, id) in vocabulary)
        {
            if (id < 0) throw new InvalidDataException($"{vocabJson}: token \"{token}\" has the negative id {id}.");
        }
        if (!vocabulary.TryGetValue(StartOfText, out int bos))
            throw new InvalidDataException($"{vocabJson}: the vocabulary has no \"{StartOfText}\" token; not a CLIP vocabulary.");
        if (!vocabulary.TryGetValue(EndOfText, out int eos))
            throw new InvalidDataException($"{vocabJson}: the vocabulary has no \"{EndOfText}\" token; not a CLIP vocabulary.");
        if (padTokenId is { } pad && (pad < 0 || !vocabulary.ContainsValue(pad)))
            throw new ArgumentOutOfRangeException(nameof(padTokenId), pad, $"pad id {pad} is not an id of {vocabJson}.");

        var specials = new Dictionary<string, int> { [StartOfText] = bos, [EndOfText] = eos };
        var options = new BpeOptions(vocabulary)
        {
            Merges = ReadMerges(mergesTxt),
            SpecialTokens = specials,
            Normalizer = ClipNormalizer.Instance,
            PreTokenizer = new RegexPreTokenizer(PreTokenizerPattern, specials),
            EndOfWordSuffix = "</w>",
            // CLIP maps UTF-8 bytes to printable characters exactly like GPT-2 (bytes_to_unicode); the library does this.
            ByteLevel = true,
        };
        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(options);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{vocabJson} + {mergesTxt}: cannot build the BPE model ({e.Message}).", e);
        }
        return new ClipTokenizer(bpe, bos, eos, padTokenId ?? eos);
    }

    /// <summary>The merge rules of <c>merges.txt</c> ("a b" per line), skipping the "#version" header.</summary>
    private static List<string> ReadMerges(string mergesTxt)
    {
        var merges = new List<string>(49000);
        int lineNumber = 0;
        foreach (string line in File.ReadLines(mergesTxt))
        {
            lineNumber++;
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
                throw new InvalidDataException($"{mergesTxt}: line {lineNumber}: expected two symbols separated by one space, found \"{line}\".");
            merges.Add(line);
        }
        return merges;
    }

    private static string? ReadPadToken(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("pad_token", out var pad)) return null;
            return pad.ValueKind switch
            {
                JsonValueKind.String => pad.GetString(),
                JsonValueKind.Object when pad.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
                JsonValueKind.Null => null,
                _ => throw new InvalidDataException($"{path}: field 'pad_token': expected a string or an object with \"content\", found {pad.ValueKind}."),
            };
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON ({e.Message}).", e);
        }
    }

    /// <summary>The BPE ids of <paramref name="text"/> with no BOS/EOS, no truncation and no padding.</summary>
    public IReadOnlyList<int> EncodeWithoutSpecials(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _bpe.EncodeToIds(text);
    }

    /// <summary>
    /// The 77 text-encoder ids of <paramref name="prompt"/>: BOS, the first 75 tokens, EOS, then <paramref name="padId"/>
    /// (default <see cref="PadId"/>). Words whose tokens were all truncated away have empty positions.
    /// </summary>
    public ClipEncoding Encode(string prompt, int? padId = null)
    {
        var (words, tokens) = Tokenize(prompt);
        return Build(prompt, words, tokens, 0, padId ?? PadId, truncateAfterChunk: true);
    }

    /// <summary>
    /// Long prompts as consecutive 77-id chunks (75 prompt tokens each, every chunk BOS..EOS + padding), as prompt-weighting
    /// front ends feed them to the text encoder and concatenate the hidden states. A prompt of up to 75 tokens (or an
    /// empty one) gives one chunk equal to <see cref="Encode"/>. Each chunk lists the words with tokens in it, with
    /// positions in that chunk; a word cut by a chunk boundary appears in both chunks.
    /// </summary>
    public IReadOnlyList<ClipEncoding> EncodeChunks(string prompt, int? padId = null)
    {
        var (words, tokens) = Tokenize(prompt);
        int chunks = Math.Max(1, (tokens.Count + MaxPromptTokens - 1) / MaxPromptTokens);
        var result = new List<ClipEncoding>(chunks);
        for (int c = 0; c < chunks; c++) result.Add(Build(prompt, words, tokens, c * MaxPromptTokens, padId ?? PadId, truncateAfterChunk: false));
        return result;
    }

    private readonly record struct Piece(int Start, int Length);

    /// <summary>Pre-tokenizer pieces of the prompt, and each BPE token's id and piece index.</summary>
    private (List<Piece> Words, List<(int Id, int Word)> Tokens) Tokenize(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        string normalized = ClipNormalizer.Instance.Normalize(prompt);
        var words = new List<Piece>();
        foreach (var (offset, length) in _bpe.PreTokenizer!.PreTokenize(normalized)) words.Add(new Piece(offset, length));

        // The library reports each token's offset in the normalized text, which has the prompt's length and layout.
        var encoded = _bpe.EncodeToTokens(normalized, out _, considerPreTokenization: true, considerNormalization: false);
        var tokens = new List<(int Id, int Word)>(encoded.Count);
        int w = 0;
        foreach (var token in encoded)
        {
            int start = token.Offset.Start.GetOffset(normalized.Length);
            while (w < words.Count && words[w].Start + words[w].Length <= start) w++;
            if (w == words.Count || start < words[w].Start)
                throw new InvalidOperationException($"BPE token '{token.Value}' at offset {start} lies outside every pre-tokenizer piece of \"{prompt}\".");
            tokens.Add((token.Id, w));
        }
        return (words, tokens);
    }

    private ClipEncoding Build(string prompt, List<Piece> words, List<(int Id, int Word)> tokens, int first, int padId, bool truncateAfterChunk)
    {
        int count = Math.Clamp(tokens.Count - first, 0, MaxPromptTokens);
        var ids = new int[MaxLength];
        ids[0] = BosId;
        var positions = new List<int>[words.Count];
        for (int i = 0; i < count; i++)
        {
            var (id, word) = tokens[first + i];
            ids[1 + i] = id;
            (positions[word] ??= new List<int>()).Add(1 + i);
        }
        ids[1 + count] = EosId;
        for (int i = count + 2; i < MaxLength; i++) ids[i] = padId;

        var clipWords = new List<ClipWord>(words.Count);
        for (int w = 0; w < words.Count; w++)
        {
            if (!truncateAfterChunk && positions[w] is null) continue; // chunks list only their own words
            clipWords.Add(new ClipWord(prompt.Substring(words[w].Start, words[w].Length), words[w].Start, words[w].Length,
                positions[w]?.ToArray() ?? []));
        }
        return new ClipEncoding(ids, clipWords, truncateAfterChunk && tokens.Count > MaxPromptTokens, count);
    }
}

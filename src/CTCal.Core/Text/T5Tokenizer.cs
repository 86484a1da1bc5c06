using Microsoft.ML.Tokenizers;

namespace CTCal.Core.Text;

/// <summary>
/// T5's SentencePiece (Unigram) tokenizer, read from a diffusers <c>tokenizer_3/spiece.model</c> by Microsoft.ML.Tokenizers'
/// <see cref="SentencePieceTokenizer"/>, called the way SD3's pipeline calls transformers' T5TokenizerFast
/// (<c>padding="max_length"</c>, <c>truncation=True</c>, <c>add_special_tokens=True</c>): the prompt's pieces cut to
/// max_length - 1, then <c>&lt;/s&gt;</c>, then <c>&lt;pad&gt;</c> up to max_length. <c>tokenizer.json</c> is not read.
/// </summary>
/// <remarks>
/// Not yet checked against transformers' ids for the real spiece.model (no reference ids in the fixtures): the
/// normalization (nmt_nfkc's precompiled charsmap) is whatever Microsoft.ML.Tokenizers applies.
/// </remarks>
public sealed class T5Tokenizer
{
    /// <summary>The SentencePiece model file of a transformers T5 tokenizer folder.</summary>
    public const string ModelFileName = "spiece.model";

    /// <summary>SD3's default max_sequence_length (diffusers &gt;= 0.29.1; 0.29.0 used 77).</summary>
    public const int DefaultMaxLength = 256;

    private readonly SentencePieceTokenizer _sentencePiece;

    private T5Tokenizer(SentencePieceTokenizer sentencePiece, int eosId, int padId)
    {
        _sentencePiece = sentencePiece;
        EosId = eosId;
        PadId = padId;
    }

    /// <summary><c>&lt;/s&gt;</c> (1 in T5's vocabulary).</summary>
    public int EosId { get; }

    /// <summary><c>&lt;pad&gt;</c> (0 in T5's vocabulary).</summary>
    public int PadId { get; }

    /// <summary>Loads <see cref="ModelFileName"/> from a tokenizer folder (<c>tokenizer_3/</c>).</summary>
    public static T5Tokenizer FromFolder(string tokenizerFolder)
    {
        ArgumentNullException.ThrowIfNull(tokenizerFolder);
        return FromFile(Path.Combine(tokenizerFolder, ModelFileName));
    }

    /// <exception cref="InvalidDataException">the model has no end-of-sentence id or no <c>&lt;pad&gt;</c> piece.</exception>
    public static T5Tokenizer FromFile(string spieceModel)
    {
        ArgumentNullException.ThrowIfNull(spieceModel);
        // T5's model says bos_id = -1, which Microsoft.ML.Tokenizers 2.0.1 cannot load; see SentencePieceModelPatch.
        byte[] model = SentencePieceModelPatch.ReplaceMissingBos(File.ReadAllBytes(spieceModel), spieceModel);
        SentencePieceTokenizer sentencePiece;
        using (var stream = new MemoryStream(model, writable: false))
            sentencePiece = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
        int eos = sentencePiece.EndOfSentenceId;
        if (eos < 0) throw new InvalidDataException($"{spieceModel}: the model has no end-of-sentence id (T5 uses </s> = 1)");
        if (!sentencePiece.Vocabulary.TryGetValue("<pad>", out int pad))
            throw new InvalidDataException($"{spieceModel}: the model has no \"<pad>\" piece (T5 uses id 0)");
        return new T5Tokenizer(sentencePiece, eos, pad);
    }

    /// <summary>The prompt's ids without <c>&lt;/s&gt;</c>, truncation or padding.</summary>
    public IReadOnlyList<int> EncodeWithoutSpecials(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _sentencePiece.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false);
    }

    /// <summary>
    /// Exactly <paramref name="maxLength"/> ids: the prompt's first maxLength - 1 ids, <see cref="EosId"/>, then
    /// <see cref="PadId"/>.
    /// </summary>
    public long[] Encode(string prompt, int maxLength = DefaultMaxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        var pieces = EncodeWithoutSpecials(prompt);
        int kept = Math.Min(pieces.Count, maxLength - 1);
        var ids = new long[maxLength];
        for (int i = 0; i < kept; i++) ids[i] = pieces[i];
        ids[kept] = EosId;
        for (int i = kept + 1; i < maxLength; i++) ids[i] = PadId;
        return ids;
    }
}

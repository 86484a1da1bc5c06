using System.Text;
using CTCal.Core.Text;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// The T5 tokenizer over a tiny hand-written SentencePiece Unigram model laid out as T5's (0 = &lt;pad&gt;, 1 = &lt;/s&gt;,
/// 2 = &lt;unk&gt;, no BOS): what it checks is the SD3 pipeline's call (eos, truncation, padding), not T5's vocabulary.
/// </summary>
public sealed class T5TokenizerTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-t5-tok");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Piece types of sentencepiece_model.proto.
    private const int Normal = 1, Unknown = 2, Control = 3;

    private static readonly (string Piece, float Score, int Type)[] Pieces =
    [
        ("<pad>", 0f, Control), ("</s>", 0f, Control), ("<unk>", 0f, Unknown),
        ("\u2581a", -1f, Normal), ("\u2581red", -1f, Normal), ("\u2581cat", -1f, Normal), ("\u2581", -3f, Normal),
        ("a", -5f, Normal), ("c", -5f, Normal), ("t", -5f, Normal), ("r", -5f, Normal), ("e", -5f, Normal), ("d", -5f, Normal),
    ];

    private string WriteModel()
    {
        var model = new MemoryStream();
        foreach (var (piece, score, type) in Pieces)
        {
            var p = new MemoryStream();
            Bytes(p, 1, Encoding.UTF8.GetBytes(piece));
            Tag(p, 2, 5);
            p.Write(BitConverter.GetBytes(score));
            Varint(p, 3, type);
            Bytes(model, 1, p.ToArray());
        }
        var trainer = new MemoryStream();
        Varint(trainer, 3, 1);                 // model_type UNIGRAM
        Varint(trainer, 4, Pieces.Length);      // vocab_size
        Varint(trainer, 40, 2);                // unk_id
        Varint(trainer, 41, -1);               // bos_id: none
        Varint(trainer, 42, 1);                // eos_id
        Varint(trainer, 43, 0);                // pad_id
        Bytes(model, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        Bytes(normalizer, 1, Encoding.UTF8.GetBytes("identity"));
        Varint(normalizer, 3, 1);              // add_dummy_prefix
        Varint(normalizer, 4, 1);              // remove_extra_whitespaces
        Varint(normalizer, 5, 1);              // escape_whitespaces
        Bytes(model, 3, normalizer.ToArray());
        string path = Path.Combine(_dir, T5Tokenizer.ModelFileName);
        File.WriteAllBytes(path, model.ToArray());
        return path;
    }

    private static void Tag(Stream s, int field, int wire) => Raw(s, (ulong)((field << 3) | wire));

    private static void Varint(Stream s, int field, long value)
    {
        Tag(s, field, 0);
        Raw(s, unchecked((ulong)value)); // negative int32 fields are 10-byte two's complement varints
    }

    private static void Bytes(Stream s, int field, byte[] data)
    {
        Tag(s, field, 2);
        Raw(s, (ulong)data.Length);
        s.Write(data);
    }

    private static void Raw(Stream s, ulong v)
    {
        while (v >= 0x80)
        {
            s.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        s.WriteByte((byte)v);
    }

    [Fact]
    public void EncodesAppendsEosAndPadsToMaxLength()
    {
        var tok = T5Tokenizer.FromFolder(Path.GetDirectoryName(WriteModel())!);
        Assert.Equal(1, tok.EosId);
        Assert.Equal(0, tok.PadId);
        Assert.Equal(new[] { 3, 4, 5 }, tok.EncodeWithoutSpecials("a red cat"));
        Assert.Equal(new long[] { 3, 4, 5, 1, 0, 0, 0, 0 }, tok.Encode("a red cat", maxLength: 8));
        Assert.Equal(new long[] { 6, 9, 7, 8, 1 }, tok.Encode("tac", maxLength: 5));   // "\u2581" t a c
        Assert.Equal(T5Tokenizer.DefaultMaxLength, tok.Encode("a").Length);
    }

    /// <summary>
    /// Why the patch exists: Microsoft.ML.Tokenizers 2.0.1 cannot build a Unigram model whose bos_id is -1 (T5's). If this
    /// starts failing after a package update, SentencePieceModelPatch can go.
    /// </summary>
    [Fact]
    public void TheUnpatchedModelWithoutBosIsRefusedByTheLibrary()
    {
        using var stream = File.OpenRead(WriteModel());
        Assert.Throws<IndexOutOfRangeException>(() =>
            Microsoft.ML.Tokenizers.SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false));
    }

    [Fact]
    public void TruncationKeepsTheEos()
    {
        var tok = T5Tokenizer.FromFile(WriteModel());
        Assert.Equal(new long[] { 3, 4, 1 }, tok.Encode("a red cat", maxLength: 3));
        Assert.Equal(new long[] { 1 }, tok.Encode("a red cat", maxLength: 1));
        Assert.Equal(new long[] { 1, 0, 0 }, tok.Encode("", maxLength: 3));
    }
}

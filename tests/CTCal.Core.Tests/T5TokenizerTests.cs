using CTCal.Core.Text;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// The T5 tokenizer over a tiny hand-written SentencePiece Unigram model laid out as T5's (<see cref="TinySentencePiece"/>): what it checks is the SD3 pipeline's call (eos, truncation, padding), not T5's vocabulary.
/// </summary>
public sealed class T5TokenizerTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-t5-tok");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteModel() => TinySentencePiece.Write(_dir);

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

namespace CTCal.Core.Text;

/// <summary>
/// One CLIP text-encoder input: <see cref="InputIds"/> is always <see cref="ClipTokenizer.MaxLength"/> (77) long:
/// <c>&lt;|startoftext|&gt;</c>, the prompt's tokens, <c>&lt;|endoftext|&gt;</c>, then padding.
/// </summary>
/// <param name="InputIds">The 77 ids fed to the text encoder.</param>
/// <param name="Words">The prompt's pre-tokenizer pieces with the positions of their tokens in <paramref name="InputIds"/>.</param>
/// <param name="Truncated">True when prompt tokens were dropped to fit 75 tokens between BOS and EOS.</param>
/// <param name="TokenCount">Prompt tokens placed in <paramref name="InputIds"/> (BOS and EOS not counted); EOS sits at index TokenCount + 1.</param>
public sealed record ClipEncoding(int[] InputIds, IReadOnlyList<ClipWord> Words, bool Truncated, int TokenCount)
{
    /// <summary>Index of the <c>&lt;|endoftext|&gt;</c> token in <see cref="InputIds"/>.</summary>
    public int EosPosition => TokenCount + 1;
}

/// <summary>
/// A pre-tokenizer piece of the original prompt (CLIP's regex splits "cube," into "cube" and ",").
/// </summary>
/// <param name="Text">The piece as it appears in the original prompt (original casing).</param>
/// <param name="CharStart">Offset of the piece in the original prompt string (UTF-16 code units).</param>
/// <param name="CharLength">Length of the piece in the original prompt string (UTF-16 code units).</param>
/// <param name="TokenPositions">Positions of the piece's BPE tokens in <see cref="ClipEncoding.InputIds"/> (BOS is 0);
/// empty when truncation dropped all of them (or, in a chunk, when the piece lies in another chunk).</param>
public sealed record ClipWord(string Text, int CharStart, int CharLength, int[] TokenPositions);

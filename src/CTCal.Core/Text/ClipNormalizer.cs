using System.Text;
using Microsoft.ML.Tokenizers;

namespace CTCal.Core.Text;

/// <summary>
/// CLIP's text cleanup (<c>whitespace_clean(text).lower()</c> in openai/CLIP's simple_tokenizer) as a length-preserving
/// normalizer: every whitespace character becomes a plain space and every letter is lower-cased.
/// </summary>
/// <remarks>
/// CLIP additionally collapses whitespace runs and strips the ends. That step is implicit here: the pre-tokenizer regex
/// never yields whitespace, so collapsing cannot change the pieces or their ids, and keeping the length unchanged keeps
/// the library's token offsets valid in the caller's original prompt (which <see cref="ClipWord"/> reports).
/// Not reproduced: ftfy's mojibake repair and HTML-entity unescaping, which only matter for broken or escaped text.
/// </remarks>
internal sealed class ClipNormalizer : Normalizer
{
    public static ClipNormalizer Instance { get; } = new();

    public override string Normalize(string original) => Normalize(original.AsSpan());

    public override string Normalize(ReadOnlySpan<char> original)
    {
        var result = new StringBuilder(original.Length);
        int i = 0;
        while (i < original.Length)
        {
            if (Rune.DecodeFromUtf16(original[i..], out Rune rune, out int used) != System.Buffers.OperationStatus.Done)
            {
                result.Append(original[i]); // lone surrogate: keep as is (the byte-level BPE maps it to U+FFFD bytes)
                i++;
                continue;
            }
            if (IsPythonWhitespace(rune)) result.Append(' ', used);
            else
            {
                Rune lower = Rune.ToLowerInvariant(rune);
                // Keep the UTF-16 length so offsets stay valid in the original prompt.
                if (lower.Utf16SequenceLength == used) result.Append(lower.ToString());
                else result.Append(original.Slice(i, used));
            }
            i += used;
        }
        return result.ToString();
    }

    /// <summary>Python's <c>str.isspace()</c>, which CLIP's <c>\s+</c> uses: .NET's set plus the separators U+001C..U+001F.</summary>
    internal static bool IsPythonWhitespace(Rune r) => Rune.IsWhiteSpace(r) || r.Value is >= 0x1C and <= 0x1F;
}

using System.Text;
using CTCal.Core.IO;

namespace CTCal.Host.Web;

/// <summary>
/// PNG text chunks on finished PNG bytes (PNG specification, ISO/IEC 15948, 11.3.4.3 tEXt): <see cref="Insert"/> puts a
/// Latin-1 <c>tEXt</c> chunk right after IHDR, replacing any text chunk of the same keyword; <see cref="Read"/> lists the
/// tEXt and uncompressed iTXt chunks. Pure functions over bytes; nothing is decoded.
/// </summary>
public static class PngText
{
    /// <summary>
    /// The PNG <paramref name="png"/> with a <c>tEXt</c> chunk <paramref name="keyword"/> = <paramref name="value"/> after
    /// IHDR. Characters outside Latin-1 in the value are written as '?' (tEXt is Latin-1 by the specification, and that is
    /// the chunk other tools read the <c>parameters</c> of).
    /// </summary>
    public static byte[] Insert(byte[] png, string keyword, string value)
    {
        ArgumentNullException.ThrowIfNull(png);
        if (keyword.Length is < 1 or > 79 || keyword.Any(c => c is < ' ' or > '~') || keyword.Trim() != keyword)
        {
            throw new ArgumentException($"Invalid PNG text keyword '{keyword}' (1-79 printable Latin-1 characters, no leading or trailing space)", nameof(keyword));
        }

        var chunks = PngChunk.ReadAll(png, checkCrc: false);
        if (chunks.Count == 0 || chunks[0].Type != "IHDR")
        {
            throw new InvalidDataException("PNG does not start with an IHDR chunk");
        }

        var latin1 = Encoding.Latin1;
        string safe = new(value.Select(c => c is > '\u00FF' or '\0' ? '?' : c).ToArray());
        byte[] data = [.. latin1.GetBytes(keyword), 0, .. latin1.GetBytes(safe)];

        using var output = new MemoryStream(png.Length + data.Length + 12);
        output.Write(PngChunk.Signature);
        foreach (var chunk in chunks)
        {
            if (chunk.Type is "tEXt" or "iTXt" && KeywordOf(png, chunk) == keyword)
            {
                continue;
            }

            output.Write(png, chunk.Offset, chunk.Length + 12);
            if (chunk.Type == "IHDR")
            {
                PngChunk.Write(output, "tEXt", data);
            }
        }

        return output.ToArray();
    }

    /// <summary>The text entries of <paramref name="png"/> (tEXt, and iTXt without compression), in file order.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Read(byte[] png)
    {
        var entries = new List<KeyValuePair<string, string>>();
        foreach (var chunk in PngChunk.ReadAll(png, checkCrc: false))
        {
            var data = png.AsSpan(chunk.DataOffset, chunk.Length);
            int nul = data.IndexOf((byte)0);
            if (nul < 0)
            {
                continue;
            }

            string keyword = Encoding.Latin1.GetString(data[..nul]);
            if (chunk.Type == "tEXt")
            {
                entries.Add(new(keyword, Encoding.Latin1.GetString(data[(nul + 1)..])));
            }
            else if (chunk.Type == "iTXt" && data.Length > nul + 2 && data[nul + 1] == 0)
            {
                // keyword \0 compression-flag method language \0 translated-keyword \0 text
                var rest = data[(nul + 3)..];
                int language = rest.IndexOf((byte)0);
                int translated = language < 0 ? -1 : rest[(language + 1)..].IndexOf((byte)0);
                if (translated >= 0)
                {
                    entries.Add(new(keyword, Encoding.UTF8.GetString(rest[(language + 1 + translated + 1)..])));
                }
            }
        }

        return entries;
    }

    private static string KeywordOf(byte[] png, PngChunkAt chunk)
    {
        var data = png.AsSpan(chunk.DataOffset, chunk.Length);
        int nul = data.IndexOf((byte)0);
        return nul < 0 ? "" : Encoding.Latin1.GetString(data[..nul]);
    }
}

using System.Text;

namespace CTCal.Tests;

/// <summary>
/// A tiny hand-written SentencePiece Unigram model laid out as T5's (0 = &lt;pad&gt;, 1 = &lt;/s&gt;, 2 = &lt;unk&gt;, no BOS),
/// written as <c>spiece.model</c>: "a red cat" is ids 3 4 5; every id is below 13.
/// </summary>
internal static class TinySentencePiece
{
    /// <summary>The model's vocabulary size (every id it produces is below it).</summary>
    public static int VocabSize => Pieces.Length;

    // Piece types of sentencepiece_model.proto.
    private const int Normal = 1, Unknown = 2, Control = 3;

    private static readonly (string Piece, float Score, int Type)[] Pieces =
    [
        ("<pad>", 0f, Control), ("</s>", 0f, Control), ("<unk>", 0f, Unknown),
        ("\u2581a", -1f, Normal), ("\u2581red", -1f, Normal), ("\u2581cat", -1f, Normal), ("\u2581", -3f, Normal),
        ("a", -5f, Normal), ("c", -5f, Normal), ("t", -5f, Normal), ("r", -5f, Normal), ("e", -5f, Normal), ("d", -5f, Normal),
    ];

    /// <summary>Writes <c>spiece.model</c> into <paramref name="folder"/> (created if needed) and returns its path.</summary>
    public static string Write(string folder)
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
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "spiece.model");
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
}

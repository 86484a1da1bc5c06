namespace CTCal.Core.Text;

/// <summary>
/// Rewrites a SentencePiece <c>ModelProto</c> (protobuf, sentencepiece_model.proto) whose <c>trainer_spec.bos_id</c> is -1
/// ("no BOS", as in T5's spiece.model) to use the <c>pad_id</c> instead: Microsoft.ML.Tokenizers 2.0.1's Unigram model
/// indexes its pieces with the BOS id when it is built and throws IndexOutOfRangeException on -1. The tokenizer is created
/// without BOS emission, so the substitute id is never produced; every other byte is copied unchanged.
/// </summary>
internal static class SentencePieceModelPatch
{
    private const int TrainerSpecField = 2;
    private const int BosIdField = 41;
    private const int PadIdField = 43;

    /// <returns>The model unchanged, or with bos_id replaced by pad_id when bos_id is -1.</returns>
    /// <exception cref="InvalidDataException">malformed protobuf, or bos_id -1 with no non-negative pad_id.</exception>
    public static byte[] ReplaceMissingBos(byte[] model, string source)
    {
        var output = new MemoryStream(model.Length + 16);
        bool changed = false;
        var reader = new Reader(model, 0, model.Length, source);
        while (reader.Next(out int field, out int wire, out int start, out int end, out ulong value))
        {
            if (field == TrainerSpecField && wire == 2)
            {
                byte[] spec = PatchTrainerSpec(model, value, end, source, out bool specChanged);
                if (specChanged)
                {
                    changed = true;
                    WriteVarint(output, (TrainerSpecField << 3) | 2);
                    WriteVarint(output, (ulong)spec.Length);
                    output.Write(spec);
                    continue;
                }
            }
            output.Write(model, start, end - start);
        }
        return changed ? output.ToArray() : model;
    }

    private static byte[] PatchTrainerSpec(byte[] model, ulong length, int end, string source, out bool changed)
    {
        int from = end - (int)length;
        long? bos = null, pad = null;
        var scan = new Reader(model, from, end, source);
        while (scan.Next(out int field, out int wire, out _, out _, out ulong value))
        {
            if (wire != 0) continue;
            if (field == BosIdField) bos = unchecked((long)value);
            if (field == PadIdField) pad = unchecked((long)value);
        }
        changed = bos == -1;
        if (!changed) return [];
        if (pad is not (>= 0 and <= int.MaxValue))
            throw new InvalidDataException($"{source}: trainer_spec has bos_id -1 and no pad_id to stand in for it");
        var output = new MemoryStream(end - from);
        var copy = new Reader(model, from, end, source);
        while (copy.Next(out int field, out int wire, out int start, out int stop, out _))
        {
            if (field == BosIdField && wire == 0)
            {
                WriteVarint(output, BosIdField << 3);
                WriteVarint(output, (ulong)pad.Value);
            }
            else
            {
                output.Write(model, start, stop - start);
            }
        }
        return output.ToArray();
    }

    private static void WriteVarint(Stream s, ulong v)
    {
        while (v >= 0x80)
        {
            s.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        s.WriteByte((byte)v);
    }

    private static void WriteVarint(Stream s, int v) => WriteVarint(s, (ulong)v);

    /// <summary>Walks the fields of one protobuf message: each field's number, wire type, byte range and varint value or length.</summary>
    private struct Reader(byte[] data, int position, int end, string source)
    {
        private int _position = position;

        public bool Next(out int field, out int wire, out int start, out int stop, out ulong value)
        {
            field = wire = start = stop = 0;
            value = 0;
            if (_position >= end) return false;
            start = _position;
            ulong tag = ReadVarint();
            field = (int)(tag >> 3);
            wire = (int)(tag & 7);
            switch (wire)
            {
                case 0: value = ReadVarint(); break;
                case 1: Skip(8); break;
                case 2:
                    value = ReadVarint();
                    if (value > (ulong)(end - _position)) throw Malformed("a length runs past the end");
                    Skip((int)value);
                    break;
                case 5: Skip(4); break;
                default: throw Malformed($"unsupported wire type {wire}");
            }
            stop = _position;
            return true;
        }

        private ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_position >= end) throw Malformed("a varint runs past the end");
                byte b = data[_position++];
                result |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return result;
            }
            throw Malformed("a varint is longer than 10 bytes");
        }

        private void Skip(int count)
        {
            if (count > end - _position) throw Malformed("a field runs past the end");
            _position += count;
        }

        private readonly InvalidDataException Malformed(string why) => new($"{source}: not a SentencePiece model ({why})");
    }
}

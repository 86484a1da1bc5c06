using System.Buffers.Binary;
using System.Text;
using CTCal.Core.IO;

namespace CTCal.Core.Safetensors;

/// <summary>
/// Writes safetensors files byte-identical to the reference (Rust) implementation for the same tensors in the same order.
/// <para>Format facts relied on:</para>
/// <list type="bullet">
/// <item>The file is: an unsigned 64-bit little-endian N; N bytes of UTF-8 JSON header; the data section.</item>
/// <item>The header is one compact JSON object (no whitespace, separators <c>,</c> and <c>:</c>). The optional
/// <c>"__metadata__"</c> entry (a string-to-string object) comes first, then one entry per tensor in data order:
/// <c>"name":{"dtype":"F32","shape":[2,3],"data_offsets":[begin,end]}</c> with the keys in exactly that order.
/// Strings are escaped as serde_json does: <c>\"</c>, <c>\\</c>, <c>\b \f \n \r \t</c>, other control characters as
/// <c>\u00xx</c> (lowercase hex); everything else, non-ASCII included, is written as raw UTF-8.</item>
/// <item>The header is padded with spaces (0x20) so that 8 + N is a multiple of 8; N includes the padding.</item>
/// <item><c>data_offsets</c> are relative to the start of the data section; tensors are stored back to back from 0 with
/// no holes, and the file ends where the last tensor ends. A scalar has shape <c>[]</c> and one element.</item>
/// <item>Data is little-endian, C-contiguous (row-major). The header is limited to 100,000,000 bytes.</item>
/// </list>
/// Metadata is written only when non-empty (a null or empty map writes no <c>"__metadata__"</c> entry).
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>
    /// Writes <paramref name="tensors"/> (in the given order) to <paramref name="path"/> atomically: a temporary file in the
    /// same folder is written, flushed and renamed over the target (<see cref="AtomicFile"/>, fault point
    /// <c>safetensors.before-rename:&lt;name&gt;</c>), so readers never see a partial file.
    /// </summary>
    /// <exception cref="SafetensorsException">an invalid entry (duplicate or reserved name, negative dimension, overflow),
    /// an entry whose callback wrote a different number of bytes than its shape needs, or an I/O failure; names the tensor.</exception>
    public static void Write(string path, IReadOnlyList<SafetensorsWriteEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        byte[] header = BuildHeader(path, tensors, metadata, out long[] byteLengths);

        try
        {
            AtomicFile.Replace(path, "safetensors.before-rename:", temp =>
            {
                using var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
                Span<byte> prefix = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
                file.Write(prefix);
                file.Write(header);
                for (int i = 0; i < tensors.Count; i++)
                {
                    var entry = tensors[i];
                    var counting = new BoundedWriteStream(file, byteLengths[i], path, entry.Name);
                    entry.WriteData(counting);
                    if (counting.Written != byteLengths[i])
                        throw new SafetensorsException(path, entry.Name,
                            $"the data callback wrote {counting.Written} bytes but shape [{string.Join(", ", entry.Shape)}] of {entry.DType.ToHeaderName()} needs {byteLengths[i]}");
                }
                file.Flush(flushToDisk: true);
            }, createFolder: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafetensorsException(path, null, $"cannot write the file ({e.Message})", e);
        }
    }

    /// <summary>The padded header bytes (without the 8-byte length) and each tensor's byte length.</summary>
    internal static byte[] BuildHeader(string path, IReadOnlyList<SafetensorsWriteEntry> tensors,
        IReadOnlyDictionary<string, string>? metadata, out long[] byteLengths)
    {
        if (tensors.Count > SafetensorsHeader.MaxTensors)
            throw new SafetensorsException(path, null, $"{tensors.Count} tensors exceed the limit of {SafetensorsHeader.MaxTensors}");
        var json = new StringBuilder(64 + tensors.Count * 96);
        json.Append('{');
        bool first = true;
        if (metadata is { Count: > 0 })
        {
            json.Append("\"__metadata__\":{");
            bool firstMeta = true;
            foreach (var (key, value) in metadata)
            {
                if (value is null) throw new SafetensorsException(path, null, $"metadata value of key '{key}' is null");
                if (!firstMeta) json.Append(',');
                firstMeta = false;
                AppendString(json, key);
                json.Append(':');
                AppendString(json, value);
            }
            json.Append('}');
            first = false;
        }

        byteLengths = new long[tensors.Count];
        var names = new HashSet<string>(StringComparer.Ordinal);
        long offset = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i] ?? throw new SafetensorsException(path, null, $"entry {i} is null");
            if (t.Name is null) throw new SafetensorsException(path, null, $"entry {i} has no name");
            if (t.Name == SafetensorsHeader.MetadataKey)
                throw new SafetensorsException(path, t.Name, "the name is reserved for the metadata entry");
            if (!names.Add(t.Name)) throw new SafetensorsException(path, t.Name, "the name appears more than once");
            if (t.Shape is null) throw new SafetensorsException(path, t.Name, "the shape is null");
            if (t.WriteData is null) throw new SafetensorsException(path, t.Name, "the data callback is null");
            if (!Enum.IsDefined(t.DType)) throw new SafetensorsException(path, t.Name, $"unknown dtype {(int)t.DType}");
            long bytes;
            try
            {
                bytes = checked(SafetensorsDTypes.ElementCount(t.Shape) * t.DType.SizeInBytes());
                checked { _ = offset + bytes; }
            }
            catch (ArgumentException e)
            {
                throw new SafetensorsException(path, t.Name, $"shape [{string.Join(", ", t.Shape)}]: {e.Message}", e);
            }
            catch (OverflowException e)
            {
                throw new SafetensorsException(path, t.Name, $"shape [{string.Join(", ", t.Shape)}] is too large (byte size overflows)", e);
            }
            byteLengths[i] = bytes;

            if (!first) json.Append(',');
            first = false;
            AppendString(json, t.Name);
            json.Append(":{\"dtype\":\"").Append(t.DType.ToHeaderName()).Append("\",\"shape\":[");
            for (int d = 0; d < t.Shape.Length; d++)
            {
                if (d > 0) json.Append(',');
                json.Append(t.Shape[d].ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            json.Append("],\"data_offsets\":[")
                .Append(offset.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append(',')
                .Append((offset + bytes).ToString(System.Globalization.CultureInfo.InvariantCulture)).Append("]}");
            offset += bytes;
        }
        json.Append('}');

        byte[] utf8;
        try
        {
            utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true).GetBytes(json.ToString());
        }
        catch (EncoderFallbackException e)
        {
            throw new SafetensorsException(path, null, "a tensor name or metadata string is not valid Unicode (lone surrogate)", e);
        }
        int padded = (utf8.Length + 7) / 8 * 8; // 8 + N stays a multiple of 8
        if (padded > SafetensorsHeader.MaxHeaderBytes)
            throw new SafetensorsException(path, null, $"the header would have {padded} bytes, over the limit of {SafetensorsHeader.MaxHeaderBytes}");
        if (padded == utf8.Length) return utf8;
        var result = new byte[padded];
        utf8.CopyTo(result, 0);
        result.AsSpan(utf8.Length).Fill((byte)' ');
        return result;
    }

    /// <summary>A JSON string as serde_json writes it (see the class remarks).</summary>
    private static void AppendString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\u00").Append(((int)c).ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>Passes writes through to the file, refusing more than the entry's declared size; never closes the file.</summary>
    private sealed class BoundedWriteStream(Stream inner, long limit, string file, string tensor) : Stream
    {
        public long Written { get; private set; }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Written;
        public override long Position { get => Written; set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (Written + buffer.Length > limit)
                throw new SafetensorsException(file, tensor,
                    $"the data callback wrote more than the {limit} bytes its shape and dtype need");
            inner.Write(buffer);
            Written += buffer.Length;
        }

        public override void WriteByte(byte value) => Write([value]);

        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

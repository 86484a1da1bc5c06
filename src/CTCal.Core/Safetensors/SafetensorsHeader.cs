using System.Text.Json;

namespace CTCal.Core.Safetensors;

/// <summary>Parses and validates the JSON header of a safetensors file (see <see cref="SafetensorsWriter"/> for the format).</summary>
internal static class SafetensorsHeader
{
    /// <summary>Largest header accepted, as in the reference implementation.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Upper bound on tensor entries, so a hostile header cannot make us build huge tables.</summary>
    public const int MaxTensors = 1_000_000;

    public const string MetadataKey = "__metadata__";

    public static (List<SafetensorsTensorInfo> Tensors, Dictionary<string, string> Metadata) Parse(
        string file, ReadOnlyMemory<byte> headerUtf8, long dataLength, int maxTensors = MaxTensors)
    {
        if (!System.Text.Unicode.Utf8.IsValid(headerUtf8.Span))
            throw new SafetensorsException(file, null, "the header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerUtf8, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(file, null, $"the header is not valid JSON ({e.Message})", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new SafetensorsException(file, null, $"the header must be a JSON object, found {root.ValueKind}");
            RequireValidStrings(file, root);

            // Count first, so an oversized header is refused before any per-entry work.
            int entries = 0;
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name != MetadataKey && ++entries > maxTensors)
                    throw new SafetensorsException(file, null, $"the header lists more than {maxTensors} tensors");
            }

            var tensors = new List<SafetensorsTensorInfo>(entries);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            bool metadataSeen = false;
            foreach (var property in root.EnumerateObject())
            {
                string name = property.Name;
                if (name == MetadataKey)
                {
                    if (metadataSeen) throw new SafetensorsException(file, null, $"the header has '{MetadataKey}' twice");
                    metadataSeen = true;
                    ParseMetadata(file, property.Value, metadata);
                    continue;
                }
                if (!seen.Add(name)) throw new SafetensorsException(file, name, "the header names this tensor more than once");
                tensors.Add(ParseTensor(file, name, property.Value));
            }

            ValidateLayout(file, tensors, dataLength);
            return (tensors, metadata);
        }
    }

    /// <summary>
    /// An escaped lone surrogate (<c>"\ud800"</c>) passes JsonDocument's syntax check but makes every later read of that
    /// string throw InvalidOperationException; refuse such headers up front (depth is bounded by MaxDepth).
    /// </summary>
    private static void RequireValidStrings(string file, JsonElement element)
    {
        try
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    foreach (var property in element.EnumerateObject())
                    {
                        _ = property.Name;
                        RequireValidStrings(file, property.Value);
                    }
                    break;
                case JsonValueKind.Array:
                    foreach (var item in element.EnumerateArray()) RequireValidStrings(file, item);
                    break;
                case JsonValueKind.String:
                    _ = element.GetString();
                    break;
            }
        }
        catch (InvalidOperationException e)
        {
            throw new SafetensorsException(file, null, $"the header holds a string that is not valid UTF-16 (an escaped lone surrogate): {e.Message}", e);
        }
    }

    private static void ParseMetadata(string file, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(file, null, $"'{MetadataKey}' must be an object of strings, found {value.ValueKind}");
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsException(file, null, $"'{MetadataKey}' value of key '{entry.Name}' must be a string, found {entry.Value.ValueKind}");
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
                throw new SafetensorsException(file, null, $"'{MetadataKey}' has key '{entry.Name}' twice");
        }
    }

    private static SafetensorsTensorInfo ParseTensor(string file, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(file, name, $"the header entry must be an object, found {value.ValueKind}");
        if (!value.TryGetProperty("dtype", out var dtypeElement))
            throw new SafetensorsException(file, name, "the header entry has no 'dtype'");
        if (!value.TryGetProperty("shape", out var shapeElement))
            throw new SafetensorsException(file, name, "the header entry has no 'shape'");
        if (!value.TryGetProperty("data_offsets", out var offsetsElement))
            throw new SafetensorsException(file, name, "the header entry has no 'data_offsets'");

        if (dtypeElement.ValueKind != JsonValueKind.String)
            throw new SafetensorsException(file, name, $"'dtype' must be a string, found {dtypeElement.ValueKind}");
        string dtypeName = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype))
            throw new SafetensorsException(file, name, $"unknown or unsupported dtype '{dtypeName}'");

        if (shapeElement.ValueKind != JsonValueKind.Array)
            throw new SafetensorsException(file, name, $"'shape' must be an array, found {shapeElement.ValueKind}");
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            shape[i] = ReadNonNegative(file, name, dim, $"shape[{i}]");
            i++;
        }

        if (offsetsElement.ValueKind != JsonValueKind.Array || offsetsElement.GetArrayLength() != 2)
            throw new SafetensorsException(file, name, "'data_offsets' must be an array [begin, end]");
        long begin = ReadNonNegative(file, name, offsetsElement[0], "data_offsets[0]");
        long end = ReadNonNegative(file, name, offsetsElement[1], "data_offsets[1]");
        if (end < begin)
            throw new SafetensorsException(file, name, $"data_offsets [{begin}, {end}] end before they begin");

        long expectedBytes;
        try
        {
            expectedBytes = checked(SafetensorsDTypes.ElementCount(shape) * dtype.SizeInBytes());
        }
        catch (OverflowException)
        {
            throw new SafetensorsException(file, name, $"shape [{string.Join(", ", shape)}] is too large (byte size overflows)");
        }
        if (expectedBytes != end - begin)
            throw new SafetensorsException(file, name,
                $"shape [{string.Join(", ", shape)}] of {dtypeName} needs {expectedBytes} bytes but data_offsets [{begin}, {end}] span {end - begin}");

        return new SafetensorsTensorInfo(name, dtype, shape, begin, end);
    }

    private static long ReadNonNegative(string file, string name, JsonElement e, string what)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long v))
            throw new SafetensorsException(file, name, $"{what} must be a non-negative integer, found {Describe(e)}");
        if (v < 0)
            throw new SafetensorsException(file, name, $"{what} is negative ({v})");
        return v;
    }

    private static string Describe(JsonElement e) => e.ValueKind == JsonValueKind.Number ? e.GetRawText() : e.ValueKind.ToString();

    /// <summary>
    /// The data section must be exactly covered: tensors sorted by offset, each starting where the previous ended,
    /// the first at 0 and the last ending at the end of the file. Sorts <paramref name="tensors"/> into data order.
    /// </summary>
    private static void ValidateLayout(string file, List<SafetensorsTensorInfo> tensors, long dataLength)
    {
        // Stable sort by (start, end) so zero-byte tensors keep their header order.
        var ordered = tensors.Select((t, index) => (t, index))
            .OrderBy(p => p.t.DataStart).ThenBy(p => p.t.DataEnd).ThenBy(p => p.index)
            .Select(p => p.t).ToList();
        tensors.Clear();
        tensors.AddRange(ordered);

        long cursor = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (var t in tensors)
        {
            if (t.DataEnd > dataLength)
                throw new SafetensorsException(file, t.Name,
                    $"data_offsets [{t.DataStart}, {t.DataEnd}] lie outside the data section ({dataLength} bytes)");
            if (t.DataStart < cursor)
                throw new SafetensorsException(file, t.Name,
                    $"data_offsets [{t.DataStart}, {t.DataEnd}] overlap tensor '{previous!.Name}' [{previous.DataStart}, {previous.DataEnd}]");
            if (t.DataStart > cursor)
                throw new SafetensorsException(file, t.Name,
                    $"data_offsets [{t.DataStart}, {t.DataEnd}] leave a hole at bytes [{cursor}, {t.DataStart}) that no tensor indexes");
            cursor = t.DataEnd;
            previous = t;
        }
        if (cursor != dataLength)
            throw new SafetensorsException(file, null,
                $"the data section has {dataLength} bytes but the tensors cover only {cursor} (trailing bytes no tensor indexes)");
    }
}

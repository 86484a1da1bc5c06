using System.Text.Json;

namespace CTCal.Core.Diffusers;

/// <summary>
/// Typed access to one JSON config object with errors that name the file and field. Unknown fields are ignored;
/// JSON null counts as absent (diffusers writes many optional fields as null).
/// </summary>
internal sealed class JsonConfig
{
    private readonly JsonElement _root;

    private JsonConfig(string file, JsonElement root)
    {
        File = file;
        _root = root;
    }

    public string File { get; }

    public static JsonConfig Load(string path)
    {
        string text;
        try
        {
            text = System.IO.File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DiffusersConfigException(path, null, $"cannot read the file ({e.Message})", e);
        }
        return Parse(path, text);
    }

    public static JsonConfig Parse(string file, string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, MaxDepth = 64 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new DiffusersConfigException(file, null, $"expected a JSON object at the top level, found {doc.RootElement.ValueKind}");
            RequireValidStrings(file, doc.RootElement, "");
            return new JsonConfig(file, doc.RootElement.Clone());
        }
        catch (JsonException e)
        {
            throw new DiffusersConfigException(file, null, $"invalid JSON ({e.Message})", e);
        }
        catch (ArgumentException e)
        {
            // JsonDocument.Parse(string) refuses text holding a lone surrogate char (only possible for in-memory strings).
            throw new DiffusersConfigException(file, null, $"the text is not valid UTF-16 ({e.Message})", e);
        }
    }

    /// <summary>
    /// An escaped lone surrogate (<c>"\ud800"</c>) passes JsonDocument's syntax check but makes every later read of that
    /// string throw InvalidOperationException; refuse it here, naming the field (depth is bounded by MaxDepth).
    /// </summary>
    private static void RequireValidStrings(string file, JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                int index = 0;
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException e)
                    {
                        throw new DiffusersConfigException(file, null, $"the name of member {index} of {(path.Length == 0 ? "the top-level object" : path)} is not valid UTF-16 (an escaped lone surrogate)", e);
                    }
                    RequireValidStrings(file, property.Value, path.Length == 0 ? name : $"{path}.{name}");
                    index++;
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in element.EnumerateArray()) RequireValidStrings(file, item, $"{path}[{i++}]");
                break;
            case JsonValueKind.String:
                try
                {
                    _ = element.GetString();
                }
                catch (InvalidOperationException e)
                {
                    throw new DiffusersConfigException(file, path, "the string is not valid UTF-16 (an escaped lone surrogate)", e);
                }
                break;
        }
    }

    public bool Has(string field) => _root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Raw(string field) => _root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public IEnumerable<string> FieldNames() => _root.EnumerateObject().Select(p => p.Name);

    private DiffusersConfigException Missing(string field) => new(File, field, "required field is missing");

    private DiffusersConfigException Wrong(string field, string expected, JsonElement v) =>
        new(File, field, $"expected {expected}, found {Describe(v)}");

    private static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"string \"{Truncate(v.GetString())}\"",
        JsonValueKind.Number => $"number {v.GetRawText()}",
        _ => v.ValueKind.ToString().ToLowerInvariant(),
    };

    private static string Truncate(string? s) => s is null ? "" : s.Length <= 40 ? s : s[..40] + "...";

    public int Int(string field) => Raw(field) is { } v ? AsInt(field, v) : throw Missing(field);

    public int Int(string field, int fallback) => Raw(field) is { } v ? AsInt(field, v) : fallback;

    public int? IntOrNull(string field) => Raw(field) is { } v ? AsInt(field, v) : null;

    private int AsInt(string field, JsonElement v)
    {
        if (v.ValueKind == JsonValueKind.Number)
        {
            if (v.TryGetInt32(out int i)) return i;
            if (v.TryGetDouble(out double d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue) return (int)d;
        }
        throw Wrong(field, "an integer", v);
    }

    public double Double(string field) => Raw(field) is { } v ? AsDouble(field, v) : throw Missing(field);

    public double Double(string field, double fallback) => Raw(field) is { } v ? AsDouble(field, v) : fallback;

    private double AsDouble(string field, JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) ? d : throw Wrong(field, "a finite number", v);

    public bool Bool(string field, bool fallback) => Raw(field) is { } v
        ? v.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Wrong(field, "true or false", v) }
        : fallback;

    public string String(string field) => Raw(field) is { } v ? AsString(field, v) : throw Missing(field);

    public string String(string field, string fallback) => Raw(field) is { } v ? AsString(field, v) : fallback;

    public string? StringOrNull(string field) => Raw(field) is { } v ? AsString(field, v) : null;

    private string AsString(string field, JsonElement v) =>
        v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Wrong(field, "a string", v);

    public int[] IntArray(string field) => Raw(field) is { } v ? AsIntArray(field, v) : throw Missing(field);

    public int[]? IntArrayOrNull(string field) => Raw(field) is { } v ? AsIntArray(field, v) : null;

    private int[] AsIntArray(string field, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, "an array of integers", v);
        var result = new int[v.GetArrayLength()];
        int i = 0;
        foreach (var item in v.EnumerateArray()) result[i++] = AsInt($"{field}[{i - 1}]", item);
        return result;
    }

    /// <summary>An int or a list of ints (diffusers writes per-block values either way); null when absent.</summary>
    public int[]? IntOrIntArray(string field, int count)
    {
        if (Raw(field) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.Number) return Enumerable.Repeat(AsInt(field, v), count).ToArray();
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, "an integer or a list of integers", v);
        int[] list = AsIntArray(field, v);
        if (list.Length != count)
            throw new DiffusersConfigException(File, field, $"has {list.Length} entries but the model has {count} blocks");
        return list;
    }

    public bool[] BoolOrBoolArray(string field, int count, bool fallback)
    {
        if (Raw(field) is not { } v) return Enumerable.Repeat(fallback, count).ToArray();
        if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) return Enumerable.Repeat(v.GetBoolean(), count).ToArray();
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, "true, false or a list of them", v);
        var list = v.EnumerateArray().Select((e, i) => e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong($"{field}[{i}]", "true or false", e),
        }).ToArray();
        if (list.Length != count)
            throw new DiffusersConfigException(File, field, $"has {list.Length} entries but the model has {count} blocks");
        return list;
    }

    public string[] StringArray(string field) => Raw(field) is { } v ? AsStringArray(field, v) : throw Missing(field);

    private string[] AsStringArray(string field, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, "an array of strings", v);
        return v.EnumerateArray().Select((e, i) => AsString($"{field}[{i}]", e)).ToArray();
    }

    public double[]? DoubleArrayOrNull(string field)
    {
        if (Raw(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, "an array of numbers", v);
        return v.EnumerateArray().Select((e, i) => AsDouble($"{field}[{i}]", e)).ToArray();
    }

    public DiffusersConfigException Invalid(string field, string message) => new(File, field, message);
}

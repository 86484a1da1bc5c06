using System.Text;
using System.Text.Json;
using CsCheck;

namespace CTCal.Fuzz.Tests;

internal enum JsonMutationKind
{
    ReplaceNumber, WrongType, ReplaceString, DuplicateKey, RenameKey, DeleteMember, DeepNest, Truncate, FlipByte,
    TrailingComma, Comment, LoneSurrogate, ByteOrderMark, ReplaceContainer,
}

/// <summary>One structured JSON mutation: <see cref="Target"/> picks a token of the right kind, <see cref="Arg"/> the replacement.</summary>
internal readonly record struct JsonMutation(JsonMutationKind Kind, int Target, int Arg)
{
    public override string ToString() => $"{Kind}@{Target}:{Arg}";
}

/// <summary>
/// Mutates JSON documents at the token level (found with <see cref="Utf8JsonReader"/> on the current text): numbers
/// replaced by huge/negative/fractional/NaN/Infinity literals, values replaced by other JSON types, escaped lone
/// surrogates and raw unicode in strings, duplicated and renamed keys, deep nesting, truncation and byte flips.
/// </summary>
internal static class JsonMutator
{
    public static readonly string[] Numbers =
    [
        "0", "-0", "-1", "1", "3", "1.5", "-2.5", "1e400", "-1e400", "1e-400", "1e308", "NaN", "Infinity", "-Infinity",
        "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967296", "9223372036854775807", "9223372036854775808",
        "-9223372036854775809", "99999999999999999999999999999", "1E2", "0.000001", "65536", "1e9", "00", "0x10", "+1",
    ];

    public static readonly string[] Values =
    [
        "null", "true", "false", "[]", "{}", "\"\"", "\"x\"", "[1,2,3]", "{\"a\":1}", "\"\\ud800\"", "[null]", "[\"a\",\"b\"]",
        "[[]]", "{\"__metadata__\":{}}", "[1e400]", "[-1]", "[\"\\udc00\"]", "[true,false]", "1", "-1", "1e400",
        new string('[', 70) + new string(']', 70), "\"" + new string('a', 20_000) + "\"",
        "[" + string.Join(",", Enumerable.Repeat("0", 20_000)) + "]",
    ];

    public static readonly string[] Strings =
    [
        "", "\\ud800", "\\udfff\\ud800", "a\\ud83d", "\\u0000", "a\\u0000b", "\\u0001\\n\\t\\r\\b\\f", "é漢字🎉", "\\u00e9",
        "../../etc/passwd", "/abs/path", "C:\\\\x", "a/b", "..", ".", " ", "NaN", "1", "null", "__metadata__",
        "<|endoftext|>", "<|startoftext|>", new string('x', 5000), "\\\"", "\\\\", "F32", "I64", "BOOL", "f32", "F8_E4M3",
        "\u202e\u200b\ufeff", "\\uFFFE\\uFFFF", "ǅ İ ß ﬁ",
    ];

    public static readonly Gen<JsonMutation> Gen =
        CsCheck.Gen.Select(CsCheck.Gen.Enum<JsonMutationKind>(), CsCheck.Gen.Int[0, int.MaxValue], CsCheck.Gen.Int[0, int.MaxValue],
            (k, t, a) => new JsonMutation(k, t, a));

    public static Gen<JsonMutation[]> Mutations(int max = 4) => Gen.Array[1, max];

    public static string Apply(string json, IEnumerable<JsonMutation> mutations)
    {
        foreach (var m in mutations) json = Apply(json, m);
        return json;
    }

    private readonly record struct Token(JsonTokenType Type, int Start, int End);

    /// <summary>Tokens of <paramref name="utf8"/> up to the first syntax error (byte ranges, string tokens with quotes).</summary>
    private static List<Token> Tokenize(byte[] utf8)
    {
        var tokens = new List<Token>();
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions
        {
            AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, MaxDepth = 4096,
        });
        try
        {
            while (reader.Read())
            {
                int start = (int)reader.TokenStartIndex;
                int end = (int)reader.BytesConsumed;
                tokens.Add(new Token(reader.TokenType, start, end));
            }
        }
        catch (JsonException)
        {
            // Mutated text: keep the tokens before the error.
        }
        return tokens;
    }

    private static string Apply(string json, JsonMutation m)
    {
        switch (m.Kind)
        {
            case JsonMutationKind.Truncate:
                return json.Length == 0 ? json : json[..(m.Target % json.Length)];
            case JsonMutationKind.LoneSurrogate:
            {
                // A raw (unescaped) lone surrogate in the .NET string; UTF-8 encoders turn it into U+FFFD.
                int at = json.Length == 0 ? 0 : m.Target % (json.Length + 1);
                return json.Insert(at, (m.Arg & 1) == 0 ? "\ud800" : "\udc00");
            }
            case JsonMutationKind.ByteOrderMark:
                return "\ufeff" + json;
            case JsonMutationKind.DeepNest:
            {
                int depth = new[] { 65, 100, 1000, 10_000 }[m.Arg % 4];
                return (m.Target & 1) == 0
                    ? new string('[', depth) + json + new string(']', depth)
                    : string.Concat(Enumerable.Repeat("{\"a\":", depth)) + json + new string('}', depth);
            }
        }

        byte[] utf8 = Encoding.UTF8.GetBytes(json);
        if (m.Kind == JsonMutationKind.FlipByte)
        {
            if (utf8.Length == 0) return json;
            utf8[m.Target % utf8.Length] ^= (byte)(1 << (m.Arg & 7));
            return Encoding.UTF8.GetString(utf8);
        }

        var tokens = Tokenize(utf8);
        List<Token> Of(params JsonTokenType[] types) => tokens.Where(t => types.Contains(t.Type)).ToList();
        string Replace(Token t, string replacement) =>
            Encoding.UTF8.GetString(utf8, 0, t.Start) + replacement + Encoding.UTF8.GetString(utf8, t.End, utf8.Length - t.End);
        string Insert(int at, string text) => Encoding.UTF8.GetString(utf8, 0, at) + text + Encoding.UTF8.GetString(utf8, at, utf8.Length - at);

        switch (m.Kind)
        {
            case JsonMutationKind.ReplaceNumber:
            {
                var numbers = Of(JsonTokenType.Number);
                if (numbers.Count == 0) goto case JsonMutationKind.WrongType;
                return Replace(numbers[m.Target % numbers.Count], Numbers[m.Arg % Numbers.Length]);
            }
            case JsonMutationKind.WrongType:
            {
                var values = Of(JsonTokenType.Number, JsonTokenType.String, JsonTokenType.True, JsonTokenType.False, JsonTokenType.Null);
                if (values.Count == 0) return json;
                return Replace(values[m.Target % values.Count], Values[m.Arg % Values.Length]);
            }
            case JsonMutationKind.ReplaceString:
            {
                var strings = Of(JsonTokenType.String);
                if (strings.Count == 0) return json;
                return Replace(strings[m.Target % strings.Count], "\"" + Strings[m.Arg % Strings.Length] + "\"");
            }
            case JsonMutationKind.RenameKey:
            {
                var keys = Of(JsonTokenType.PropertyName);
                if (keys.Count == 0) return json;
                var key = keys[m.Target % keys.Count];
                // PropertyName spans cover the quoted name; keep the ':' that follows.
                int close = Array.IndexOf(utf8, (byte)':', key.Start);
                if (close < 0) return json;
                return Encoding.UTF8.GetString(utf8, 0, key.Start) + "\"" + Strings[m.Arg % Strings.Length] + "\"" +
                       Encoding.UTF8.GetString(utf8, close, utf8.Length - close);
            }
            case JsonMutationKind.DuplicateKey:
            {
                var keys = Of(JsonTokenType.PropertyName);
                if (keys.Count == 0) return json;
                var key = keys[m.Target % keys.Count];
                int colon = Array.IndexOf(utf8, (byte)':', key.Start);
                if (colon < 0) return json;
                string name = Encoding.UTF8.GetString(utf8, key.Start, colon - key.Start).Trim();
                string value = (m.Arg & 1) == 0 ? Values[m.Arg / 2 % Values.Length] : Numbers[m.Arg / 2 % Numbers.Length];
                return Insert(key.Start, $"{name}:{value},");
            }
            case JsonMutationKind.DeleteMember:
            {
                var keys = Of(JsonTokenType.PropertyName);
                if (keys.Count == 0) return json;
                int index = tokens.IndexOf(keys[m.Target % keys.Count]);
                // Remove the key and its value (skip nested tokens to the matching end).
                int depth = 0, last = index + 1;
                for (; last < tokens.Count; last++)
                {
                    var t = tokens[last].Type;
                    if (t is JsonTokenType.StartArray or JsonTokenType.StartObject) depth++;
                    else if (t is JsonTokenType.EndArray or JsonTokenType.EndObject) depth--;
                    if (depth <= 0) break;
                }
                if (last >= tokens.Count) return json;
                int end = tokens[last].End;
                if (end < utf8.Length && utf8[end] == (byte)',') end++;
                return Encoding.UTF8.GetString(utf8, 0, tokens[index].Start) + Encoding.UTF8.GetString(utf8, end, utf8.Length - end);
            }
            case JsonMutationKind.ReplaceContainer:
            {
                // A whole object or array (not the root) replaced by null, a scalar or the other container kind.
                var starts = tokens.Select((t, i) => (t, i)).Where(p => p.i > 0 && p.t.Type is JsonTokenType.StartObject or JsonTokenType.StartArray).ToList();
                if (starts.Count == 0) goto case JsonMutationKind.WrongType;
                var (start, index) = starts[m.Target % starts.Count];
                int depth = 0, last = index;
                for (; last < tokens.Count; last++)
                {
                    var t = tokens[last].Type;
                    if (t is JsonTokenType.StartArray or JsonTokenType.StartObject) depth++;
                    else if (t is JsonTokenType.EndArray or JsonTokenType.EndObject) depth--;
                    if (depth == 0) break;
                }
                if (last >= tokens.Count) return json;
                return Encoding.UTF8.GetString(utf8, 0, start.Start) + Values[m.Arg % Values.Length] +
                       Encoding.UTF8.GetString(utf8, tokens[last].End, utf8.Length - tokens[last].End);
            }
            case JsonMutationKind.TrailingComma:
            {
                var ends = Of(JsonTokenType.EndArray, JsonTokenType.EndObject);
                if (ends.Count == 0) return json;
                return Insert(ends[m.Target % ends.Count].Start, ",");
            }
            case JsonMutationKind.Comment:
            {
                if (tokens.Count == 0) return json;
                string comment = new[] { "/*c*/", "//c\n", "/*", "#c\n" }[m.Arg % 4];
                return Insert(tokens[m.Target % tokens.Count].Start, comment);
            }
            default:
                return json;
        }
    }
}

using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;

namespace CTCal.Trainer.Cli;

/// <summary>
/// Option values from the command line and an optional <c>--config</c> JSON file. The file is one JSON object whose keys are
/// the long option names without dashes (<c>{"lora-rank": 8, "validation-prompts": ["a cat"]}</c>); a value given on the command
/// line wins over the file, the file wins over the option's default. Unknown keys and wrongly typed values are refused,
/// naming the file and key.
/// </summary>
public sealed class OptionValues
{
    private readonly ParseResult _parse;
    private readonly Dictionary<string, JsonElement> _file;
    private readonly string? _path;

    public OptionValues(ParseResult parse, string? configPath, IEnumerable<Option> known)
    {
        _parse = parse;
        _path = configPath;
        _file = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        if (configPath is null) return;
        if (!File.Exists(configPath)) throw new UsageException($"--config: {configPath} does not exist");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(configPath), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new UsageException($"{configPath}: invalid JSON ({e.Message})");
        }
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new UsageException($"{configPath}: expected one JSON object of option names and values");
        var names = known.Select(o => o.Name.TrimStart('-')).ToHashSet(StringComparer.Ordinal);
        foreach (var property in doc.RootElement.EnumerateObject())
        {
            string key = property.Name.TrimStart('-');
            if (!names.Contains(key) || key == "config")
                throw new UsageException($"{configPath}: unknown option '{property.Name}' (known: {string.Join(", ", names.Where(n => n != "config").Order())})");
            _file[key] = property.Value.Clone();
        }
    }

    private bool GivenOnCommandLine(Option option) => _parse.GetResult(option) is { Implicit: false };

    public T Get<T>(Option<T> option)
    {
        string key = option.Name.TrimStart('-');
        if (GivenOnCommandLine(option) || !_file.TryGetValue(key, out var element)) return _parse.GetValue(option)!;
        try
        {
            return (T)Convert(element, typeof(T));
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        {
            throw new UsageException($"{_path}: '{key}' must be {Describe(typeof(T))}, got {element.GetRawText()}");
        }
    }

    private static object Convert(JsonElement e, Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type);
        if (underlying is not null) return e.ValueKind == JsonValueKind.Null ? null! : Convert(e, underlying);
        if (type == typeof(string)) return e.ValueKind == JsonValueKind.String ? e.GetString()! : throw new FormatException();
        if (type == typeof(int)) return e.GetInt32();
        if (type == typeof(long)) return e.GetInt64();
        if (type == typeof(double)) return e.GetDouble();
        if (type == typeof(bool)) return e.GetBoolean();
        if (type == typeof(string[]))
        {
            if (e.ValueKind == JsonValueKind.String) return new[] { e.GetString()! };
            return e.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : throw new FormatException()).ToArray();
        }
        if (type.IsEnum)
        {
            string s = e.GetString() ?? throw new FormatException();
            return Enum.Parse(type, s.Replace("-", "").Replace("_", ""), ignoreCase: true);
        }
        throw new InvalidOperationException($"no JSON conversion for {type.Name}");
    }

    private static string Describe(Type t) => (Nullable.GetUnderlyingType(t) ?? t) switch
    {
        var x when x == typeof(int) || x == typeof(long) => "an integer",
        var x when x == typeof(double) => "a number",
        var x when x == typeof(bool) => "true or false",
        var x when x == typeof(string[]) => "a string or an array of strings",
        var x when x.IsEnum => "one of " + string.Join(", ", Enum.GetNames(x).Select(n => n.ToLower(CultureInfo.InvariantCulture))),
        _ => "a string",
    };
}

using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace CTCal.Contracts;

/// <summary>
/// Reads and writes <see cref="FineTuneJob"/>: JSON with the trainer's option names as keys (<c>lora-rank</c>,
/// <c>teacher-t</c>), and the same keys as <c>--key value</c> arguments. Unknown keys and wrongly typed values are refused
/// with a <see cref="FormatException"/> naming the source and key. A string stands for a one-item list.
/// </summary>
public static class FineTuneJobJson
{
    /// <summary>The job's settable properties, in declaration order.</summary>
    private static readonly PropertyInfo[] Settable = typeof(FineTuneJob)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).ToArray();

    private static readonly Dictionary<string, PropertyInfo> Properties = Settable.ToDictionary(p => KeyOf(p.Name), StringComparer.Ordinal);

    /// <summary>Every key of a job, in declaration order.</summary>
    public static IReadOnlyList<string> Keys { get; } = Settable.Select(p => KeyOf(p.Name)).ToList();

    /// <summary>The key of a property: <c>LoraRank</c> -> <c>lora-rank</c>, <c>TeacherT</c> -> <c>teacher-t</c>.</summary>
    public static string KeyOf(string propertyName)
    {
        var key = new StringBuilder();
        foreach (char c in propertyName)
        {
            if (char.IsUpper(c) && key.Length > 0)
            {
                key.Append('-');
            }

            key.Append(char.ToLowerInvariant(c));
        }

        return key.ToString();
    }

    /// <summary>Reads a job file.</summary>
    public static FineTuneJob Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path} does not exist", path);
        }

        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses a job from <paramref name="json"/>; <paramref name="source"/> names it in errors.</summary>
    public static FineTuneJob Parse(string json, string source)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new FormatException($"{source}: invalid JSON ({e.Message})");
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException($"{source}: expected one JSON object of option names and values");
            }

            var job = new FineTuneJob();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                string key = property.Name.TrimStart('-');
                var info = Find(key, source, property.Name);
                object? value;
                try
                {
                    value = FromJson(property.Value, info);
                }
                catch (Exception e) when (e is InvalidOperationException or FormatException)
                {
                    throw new FormatException($"{source}: '{key}' must be {Describe(info.PropertyType)}, got {property.Value.GetRawText()}");
                }

                job = With(job, info, value);
            }

            return job;
        }
    }

    /// <summary>The job as indented JSON: every key, its value (null values left out).</summary>
    public static string ToJson(FineTuneJob job)
    {
        var root = new JsonObject();
        foreach (string key in Keys)
        {
            object? value = Properties[key].GetValue(job);
            if (value is not null)
            {
                root[key] = JsonSerializer.SerializeToNode(value, value.GetType());
            }
        }

        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>The settings of <paramref name="job"/> whose values differ from <see cref="FineTuneJob.Defaults"/>, in key order.</summary>
    public static IReadOnlyList<FineTuneJobSetting> ChangedSettings(FineTuneJob job)
    {
        var changed = new List<FineTuneJobSetting>();
        foreach (string key in Keys)
        {
            object? value = Properties[key].GetValue(job);
            object? baseline = Properties[key].GetValue(FineTuneJob.Defaults);
            bool same = value is IEnumerable<string> a && value is not string && baseline is IEnumerable<string> b ? a.SequenceEqual(b) : Equals(value, baseline);
            if (!same)
            {
                changed.Add(new FineTuneJobSetting(key, value));
            }
        }

        return changed;
    }

    /// <summary>The job with <paramref name="key"/> set to <paramref name="value"/> (of the property's type, or null).</summary>
    public static FineTuneJob With(FineTuneJob job, string key, object? value)
    {
        var info = Find(key, "job", key);
        var type = Nullable.GetUnderlyingType(info.PropertyType) ?? info.PropertyType;
        if (value is null && !AcceptsNull(info))
        {
            throw new FormatException($"job: '{key}' must be {Describe(info.PropertyType)}, got null");
        }

        if (value is not null && !type.IsInstanceOfType(value) && !(type == typeof(IReadOnlyList<string>) && value is IEnumerable<string>))
        {
            throw new FormatException($"job: '{key}' must be {Describe(info.PropertyType)}, got a {value.GetType().Name}");
        }

        return With(job, info, value is not string && value is IEnumerable<string> list ? list.ToArray() : value);
    }

    /// <summary>The job with <paramref name="settings"/> applied in order.</summary>
    public static FineTuneJob With(FineTuneJob job, IEnumerable<FineTuneJobSetting> settings)
    {
        foreach (var setting in settings)
        {
            job = With(job, setting.Key, setting.Value);
        }

        return job;
    }

    /// <summary>The job with <c>--key value ...</c> arguments applied (see <see cref="ParseArguments"/>).</summary>
    public static FineTuneJob WithArguments(FineTuneJob job, IReadOnlyList<string> arguments) => With(job, ParseArguments(arguments));

    /// <summary>
    /// Reads <c>--key value ...</c> arguments as typed settings: a key takes the tokens up to the next <c>--key</c>; a
    /// true/false key given alone means true; a list key takes every token.
    /// </summary>
    public static IReadOnlyList<FineTuneJobSetting> ParseArguments(IReadOnlyList<string> arguments)
    {
        var settings = new List<FineTuneJobSetting>();
        for (int i = 0; i < arguments.Count;)
        {
            string token = arguments[i];
            if (!token.StartsWith("--", StringComparison.Ordinal))
            {
                throw new FormatException($"trainer arguments: expected an option name, got '{token}'");
            }

            string key = token[2..];
            var info = Find(key, "trainer arguments", token);
            int end = i + 1;
            while (end < arguments.Count && !arguments[end].StartsWith("--", StringComparison.Ordinal))
            {
                end++;
            }

            var values = arguments.Skip(i + 1).Take(end - i - 1).ToArray();
            var type = Nullable.GetUnderlyingType(info.PropertyType) ?? info.PropertyType;
            object? value;
            try
            {
                value = type == typeof(IReadOnlyList<string>) ? values
                    : type == typeof(bool) && values.Length == 0 ? true
                    : values.Length == 1 ? FromText(values[0], type)
                    : throw new FormatException();
            }
            catch (FormatException)
            {
                throw new FormatException($"trainer arguments: {token} must be {Describe(info.PropertyType)}, got '{string.Join(' ', values)}'");
            }

            settings.Add(new FineTuneJobSetting(key, value));
            i = end;
        }

        return settings;
    }

    private static PropertyInfo Find(string key, string source, string spelled) =>
        Properties.TryGetValue(key, out var info)
            ? info
            : throw new FormatException($"{source}: unknown option '{spelled}' (known: {string.Join(", ", Keys.Order(StringComparer.Ordinal))})");

    private static FineTuneJob With(FineTuneJob job, PropertyInfo info, object? value)
    {
        // Records are immutable: set the init-only property on a copy (the compiler's clone, through the 'with' copy constructor).
        var copy = job with { };
        info.SetValue(copy, value);
        return copy;
    }

    private static object? FromJson(JsonElement e, PropertyInfo info)
    {
        var type = info.PropertyType;
        var underlying = Nullable.GetUnderlyingType(type);
        if (e.ValueKind == JsonValueKind.Null)
        {
            return AcceptsNull(info) ? null : throw new FormatException();
        }

        type = underlying ?? type;
        if (type == typeof(string))
        {
            return e.ValueKind == JsonValueKind.String ? e.GetString()! : throw new FormatException();
        }

        if (type == typeof(int))
        {
            return e.GetInt32();
        }

        if (type == typeof(long))
        {
            return e.GetInt64();
        }

        if (type == typeof(double))
        {
            return e.GetDouble();
        }

        if (type == typeof(bool))
        {
            return e.GetBoolean();
        }

        if (type == typeof(IReadOnlyList<string>))
        {
            if (e.ValueKind == JsonValueKind.String)
            {
                return new[] { e.GetString()! };
            }

            return e.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : throw new FormatException()).ToArray();
        }

        throw new InvalidOperationException($"no JSON conversion for {type.Name}");
    }

    private static readonly NullabilityInfoContext Nullability = new();

    private static bool AcceptsNull(PropertyInfo info)
    {
        lock (Nullability)
        {
            return Nullability.Create(info).WriteState == NullabilityState.Nullable;
        }
    }

    private static object FromText(string text, Type type)
    {
        var inv = CultureInfo.InvariantCulture;
        if (type == typeof(string))
        {
            return text;
        }

        if (type == typeof(int))
        {
            return int.Parse(text, NumberStyles.Integer, inv);
        }

        if (type == typeof(long))
        {
            return long.Parse(text, NumberStyles.Integer, inv);
        }

        if (type == typeof(double))
        {
            return double.Parse(text, NumberStyles.Float, inv);
        }

        if (type == typeof(bool))
        {
            return bool.Parse(text);
        }

        throw new FormatException();
    }

    private static string Describe(Type t) => (Nullable.GetUnderlyingType(t) ?? t) switch
    {
        var x when x == typeof(int) || x == typeof(long) => "an integer",
        var x when x == typeof(double) => "a number",
        var x when x == typeof(bool) => "true or false",
        var x when x == typeof(IReadOnlyList<string>) => "a string or an array of strings",
        _ => "a string",
    };
}

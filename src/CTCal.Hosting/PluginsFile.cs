using System.Text.Json;
using System.Text.RegularExpressions;

namespace CTCal.Hosting;

/// <summary>One plugin entry of <c>plugins.json</c>, with paths resolved and checked.</summary>
/// <param name="Index">Position in the <c>plugins</c> array (for messages).</param>
/// <param name="Directory">Absolute plugin folder, inside the folder of <c>plugins.json</c>.</param>
/// <param name="AssemblyPath">Absolute path of the plugin assembly inside <paramref name="Directory"/>.</param>
/// <param name="Settings">The entry's <c>settings</c> object (cloned, so it outlives the document).</param>
public sealed record PluginEntry(int Index, string Id, string Directory, string AssemblyPath, bool Enabled, JsonElement Settings);

/// <summary>
/// <c>plugins.json</c>: <c>{ "version": 1, "plugins": [ { "id", "path", "assembly", "enabled", "settings" } ] }</c>.
/// See docs/plugins.md. Errors name the file and the field (<c>plugins[0].path</c>).
/// </summary>
public sealed record PluginsFile(string FilePath, string BaseDirectory, IReadOnlyList<PluginEntry> Plugins)
{
    public const int SupportedVersion = 1;

    private static readonly Regex IdPattern = new("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", RegexOptions.CultureInvariant);
    private static readonly string[] RootKeys = { "version", "plugins" };
    private static readonly string[] EntryKeys = { "id", "path", "assembly", "enabled", "settings" };

    /// <exception cref="PluginsFileException">The file is missing, not JSON, or a field is invalid.</exception>
    public static PluginsFile Load(string path)
    {
        string file = Path.GetFullPath(path);
        if (!File.Exists(file))
        {
            throw new PluginsFileException(file, null, "file not found");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(file), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new PluginsFileException(file, null, $"invalid JSON at line {ex.LineNumber + 1}: {ex.Message}");
        }

        using (doc)
        {
            return Parse(file, doc.RootElement);
        }
    }

    private static PluginsFile Parse(string file, JsonElement root)
    {
        string baseDirectory = Path.GetDirectoryName(file)!;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new PluginsFileException(file, null, $"expected a JSON object, found {root.ValueKind}");
        }

        RejectUnknown(file, root, RootKeys, "");
        if (!root.TryGetProperty("version", out var version))
        {
            throw new PluginsFileException(file, "version", "missing (expected 1)");
        }

        if (version.ValueKind != JsonValueKind.Number || !version.TryGetInt32(out int v) || v != SupportedVersion)
        {
            throw new PluginsFileException(file, "version", $"unsupported value {version.GetRawText()} (expected {SupportedVersion})");
        }

        if (!root.TryGetProperty("plugins", out var plugins) || plugins.ValueKind != JsonValueKind.Array)
        {
            throw new PluginsFileException(file, "plugins", "missing or not an array");
        }

        var entries = new List<PluginEntry>();
        var ids = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        int index = 0;
        foreach (var item in plugins.EnumerateArray())
        {
            string at = $"plugins[{index}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw new PluginsFileException(file, at, $"expected an object, found {item.ValueKind}");
            }

            RejectUnknown(file, item, EntryKeys, at + ".");
            string id = RequiredString(file, item, "id", at);
            if (!IdPattern.IsMatch(id))
            {
                throw new PluginsFileException(file, $"{at}.id", $"'{id}' is not a valid id (letters, digits, '.', '-', '_'; at most 64)");
            }

            if (!ids.Add(id))
            {
                throw new PluginsFileException(file, $"{at}.id", $"duplicate id '{id}'");
            }

            string relativeDir = RequiredString(file, item, "path", at);
            string directory = HostPaths.ResolveInside(baseDirectory, relativeDir, file, $"{at}.path");
            string assemblyName = RequiredString(file, item, "assembly", at);
            if (assemblyName.IndexOfAny(new[] { '/', '\\' }) >= 0 || assemblyName is "." or ".." || !assemblyName.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            {
                throw new PluginsFileException(file, $"{at}.assembly", $"'{assemblyName}' must be a .dll file name inside the plugin folder");
            }

            string assemblyPath = HostPaths.ResolveInside(directory, assemblyName, file, $"{at}.assembly");
            bool enabled = true;
            if (item.TryGetProperty("enabled", out var enabledElement))
            {
                enabled = enabledElement.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => throw new PluginsFileException(file, $"{at}.enabled", $"expected true or false, found {enabledElement.GetRawText()}"),
                };
            }

            JsonElement settings;
            if (item.TryGetProperty("settings", out var settingsElement))
            {
                if (settingsElement.ValueKind != JsonValueKind.Object)
                {
                    throw new PluginsFileException(file, $"{at}.settings", $"expected an object, found {settingsElement.ValueKind}");
                }

                settings = settingsElement.Clone();
            }
            else
            {
                using var empty = JsonDocument.Parse("{}");
                settings = empty.RootElement.Clone();
            }

            entries.Add(new PluginEntry(index, id, directory, assemblyPath, enabled, settings));
            index++;
        }

        return new PluginsFile(file, baseDirectory, entries);
    }

    private static string RequiredString(string file, JsonElement item, string key, string at)
    {
        if (!item.TryGetProperty(key, out var e))
        {
            throw new PluginsFileException(file, $"{at}.{key}", "missing");
        }

        if (e.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(e.GetString()))
        {
            throw new PluginsFileException(file, $"{at}.{key}", $"expected a non-empty string, found {e.GetRawText()}");
        }

        return e.GetString()!;
    }

    private static void RejectUnknown(string file, JsonElement obj, string[] known, string prefix)
    {
        foreach (var property in obj.EnumerateObject())
        {
            if (Array.IndexOf(known, property.Name) < 0)
            {
                throw new PluginsFileException(file, prefix + property.Name, $"unknown field (known: {string.Join(", ", known)})");
            }
        }
    }
}

/// <summary>An invalid <c>plugins.json</c>; <see cref="Exception.Message"/> reads <c>file: field: problem</c>.</summary>
public sealed class PluginsFileException : Exception
{
    public PluginsFileException(string file, string? field, string problem)
        : base(field is null ? $"{file}: {problem}" : $"{file}: {field}: {problem}")
    {
        File = file;
        Field = field;
    }

    public string File { get; }

    public string? Field { get; }
}

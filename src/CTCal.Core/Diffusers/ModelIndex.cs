using System.Text.Json;

namespace CTCal.Core.Diffusers;

/// <summary>
/// One component of a pipeline in <c>model_index.json</c>: <c>"unet": ["diffusers", "UNet2DConditionModel"]</c>.
/// diffusers writes <c>[null, null]</c> for an optional component the pipeline does not have (e.g. safety_checker).
/// </summary>
public sealed record ModelIndexComponent(string? Library, string? ClassName)
{
    /// <summary>False for a <c>[null, null]</c> (or JSON null) entry: the pipeline has no such component.</summary>
    public bool IsPresent => Library is not null || ClassName is not null;
}

/// <summary>
/// <c>model_index.json</c> of a diffusers pipeline folder: the pipeline class, the diffusers version that saved it,
/// its components (name -> (library, class); the name is also the component's sub-folder) and any other settings.
/// </summary>
public sealed record ModelIndex
{
    public string File { get; init; } = "";

    /// <summary><c>_class_name</c>, e.g. StableDiffusionPipeline.</summary>
    public required string ClassName { get; init; }

    /// <summary><c>_diffusers_version</c>; null when absent.</summary>
    public string? DiffusersVersion { get; init; }

    /// <summary>Every [library, class] entry, in file order, including <c>[null, null]</c> ones.</summary>
    public required IReadOnlyDictionary<string, ModelIndexComponent> Components { get; init; }

    /// <summary>Other top-level fields (e.g. requires_safety_checker) as raw JSON text; "_"-prefixed fields other than the two above included.</summary>
    public required IReadOnlyDictionary<string, string> OtherFields { get; init; }

    /// <summary>True when <paramref name="name"/> is listed with a library or class (not <c>[null, null]</c>).</summary>
    public bool HasComponent(string name) => Components.TryGetValue(name, out var c) && c.IsPresent;

    /// <summary>The entry of a present component.</summary>
    /// <exception cref="DiffusersConfigException">absent or <c>[null, null]</c>; names the file and the component.</exception>
    public ModelIndexComponent GetComponent(string name) =>
        Components.TryGetValue(name, out var c) && c.IsPresent
            ? c
            : throw new DiffusersConfigException(File, name, "the pipeline has no such component");

    public static ModelIndex Load(string path) => FromJson(JsonConfig.Load(path));

    public static ModelIndex Parse(string json, string file = "model_index.json") => FromJson(JsonConfig.Parse(file, json));

    private static ModelIndex FromJson(JsonConfig c)
    {
        var components = new Dictionary<string, ModelIndexComponent>(StringComparer.Ordinal);
        var other = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string name in c.FieldNames())
        {
            if (name is "_class_name" or "_diffusers_version") continue;
            JsonElement? raw = c.Raw(name);
            if (name.StartsWith('_'))
            {
                other[name] = raw?.GetRawText() ?? "null";
                continue;
            }
            if (raw is not { } value)
            {
                components[name] = new ModelIndexComponent(null, null); // "name": null
                continue;
            }
            if (value.ValueKind != JsonValueKind.Array)
            {
                other[name] = value.GetRawText();
                continue;
            }
            if (value.GetArrayLength() != 2)
                throw c.Invalid(name, $"expected a [library, class] pair, found an array of {value.GetArrayLength()} entries");
            components[name] = new ModelIndexComponent(StringOrNull(c, name, value[0], 0), StringOrNull(c, name, value[1], 1));
        }
        return new ModelIndex
        {
            File = c.File,
            ClassName = c.String("_class_name"),
            DiffusersVersion = c.StringOrNull("_diffusers_version"),
            Components = components,
            OtherFields = other,
        };
    }

    private static string? StringOrNull(JsonConfig c, string name, JsonElement e, int index) => e.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => e.GetString(),
        _ => throw c.Invalid($"{name}[{index}]", $"expected a string or null, found {e.ValueKind.ToString().ToLowerInvariant()}"),
    };
}

using System.Reflection;
using System.Runtime.Loader;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CTCal.Package;

/// <summary>
/// <c>ctcal-plugin.json</c>, beside the plugin DLL: what a host (or a person) can read before loading anything. Every value
/// comes from the built assembly itself: its <c>AssemblyMetadata</c> (CTCal.Plugin/AssemblyInfo.cs) and its reference to
/// CTCal.Contracts, which is the version <c>CTCal.Hosting.ContractsVersion</c> checks at load.
/// </summary>
public sealed record PluginManifest
{
    public const int CurrentFormat = 1;

    [JsonPropertyName("format")]
    public int Format { get; init; } = CurrentFormat;

    [JsonPropertyName("id")]
    public required string Id { get; init; }

    [JsonPropertyName("version")]
    public required string Version { get; init; }

    [JsonPropertyName("assembly")]
    public required string Assembly { get; init; }

    /// <summary>The CTCal.Contracts assembly version the plugin was compiled against; a host must have exactly this one.</summary>
    [JsonPropertyName("contractsVersion")]
    public required string ContractsVersion { get; init; }

    [JsonPropertyName("targetFramework")]
    public required string TargetFramework { get; init; }

    [JsonPropertyName("rid")]
    public required string Rid { get; init; }

    [JsonPropertyName("families")]
    public required IReadOnlyList<string> Families { get; init; }

    [JsonPropertyName("executionProviders")]
    public required IReadOnlyList<string> ExecutionProviders { get; init; }

    /// <summary>The trainer sidecar, relative to the plugin folder (forward slashes).</summary>
    [JsonPropertyName("trainer")]
    public required string Trainer { get; init; }

    [JsonPropertyName("readyToRun")]
    public bool ReadyToRun { get; init; }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static PluginManifest Read(string path) =>
        JsonSerializer.Deserialize<PluginManifest>(File.ReadAllText(path), Json) ?? throw new PackageException($"{path}: empty manifest");

    /// <summary>Reads the plugin's identity from <paramref name="pluginDll"/> (IL build) without running any of its code.</summary>
    public static PluginManifest FromAssembly(string pluginDll, string rid, bool readyToRun)
    {
        var context = new AssemblyLoadContext($"inspect:{pluginDll}", isCollectible: true);
        try
        {
            using var stream = File.OpenRead(pluginDll);
            var assembly = context.LoadFromStream(stream);
            var metadata = assembly.GetCustomAttributesData()
                .Where(a => a.AttributeType.FullName == typeof(AssemblyMetadataAttribute).FullName && a.ConstructorArguments.Count == 2)
                .ToDictionary(a => (string)a.ConstructorArguments[0].Value!, a => (string?)a.ConstructorArguments[1].Value, StringComparer.Ordinal);
            string Required(string key) => metadata.TryGetValue(key, out string? value) && !string.IsNullOrWhiteSpace(value)
                ? value
                : throw new PackageException($"{pluginDll}: no [assembly: AssemblyMetadata(\"{key}\", ...)]");
            static IReadOnlyList<string> List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

            var contracts = assembly.GetReferencedAssemblies().FirstOrDefault(a => a.Name == "CTCal.Contracts")?.Version
                ?? throw new PackageException($"{pluginDll} does not reference CTCal.Contracts");
            string framework = assembly.GetCustomAttributesData()
                .Where(a => a.AttributeType.FullName == "System.Runtime.Versioning.TargetFrameworkAttribute")
                .Select(a => (string?)a.ConstructorArguments[0].Value).FirstOrDefault() ?? "";
            return new PluginManifest
            {
                Id = Required("CTCal.PluginId"),
                Version = Required("CTCal.PluginVersion"),
                Assembly = Path.GetFileName(pluginDll),
                ContractsVersion = contracts.ToString(),
                TargetFramework = framework,
                Rid = rid,
                Families = List(Required("CTCal.Families")),
                ExecutionProviders = List(Required("CTCal.ExecutionProviders")),
                Trainer = $"{PackageLayout.TrainerFolder}/{PackageLayout.TrainerExecutable(rid)}",
                ReadyToRun = readyToRun,
            };
        }
        finally
        {
            context.Unload();
        }
    }
}

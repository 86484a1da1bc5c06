using System.Reflection;
using System.Text.Json;

namespace CTCal.Tests;

/// <summary>Lays out a host root (plugins.json, plugin folders copied from the plugin's build output, models).</summary>
internal static class PluginFolders
{
    /// <summary>The plugin's build output (bin/&lt;Configuration&gt;/net8.0), found without referencing its types.</summary>
    public static string PluginBuildOutput
    {
        get
        {
            string configured = typeof(PluginFolders).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .First(a => a.Key == "PluginBuildOutput").Value!;
            if (File.Exists(Path.Combine(configured, "CTCal.Plugin.dll")))
            {
                return configured;
            }

            string? artifacts = Environment.GetEnvironmentVariable("CTCAL_ARTIFACTS");
            if (artifacts is not null)
            {
                string candidate = Directory.EnumerateFiles(Path.Combine(artifacts, "bin", "CTCal.Plugin"), "CTCal.Plugin.dll", SearchOption.AllDirectories).FirstOrDefault() ?? "";
                if (candidate.Length > 0)
                {
                    return Path.GetDirectoryName(candidate)!;
                }
            }

            throw new DirectoryNotFoundException($"CTCal.Plugin build output not found at {configured}; build the plugin first");
        }
    }

    /// <summary>Copies the plugin's build output into <paramref name="root"/>/plugins/<paramref name="name"/>.</summary>
    public static string CopyPlugin(string root, string name)
    {
        string source = PluginBuildOutput;
        string target = Path.Combine(root, "plugins", name);
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(source, file);
            string destination = Path.Combine(target, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination);
        }

        return target;
    }

    /// <summary>Writes plugins.json with the given entries (objects serialized as-is).</summary>
    public static string WritePluginsJson(string root, params object[] plugins)
    {
        string path = Path.Combine(root, "plugins.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new { version = 1, plugins }, new JsonSerializerOptions { WriteIndented = true }));
        return path;
    }

    public static object Entry(string id, string folder, object? settings = null, bool enabled = true) =>
        new { id, path = $"plugins/{folder}", assembly = "CTCal.Plugin.dll", enabled, settings = settings ?? new { modelsFolder = "models", executionProviders = new[] { "cpu" } } };
}

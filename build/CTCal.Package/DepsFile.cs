using System.Text.Json;
using System.Text.Json.Nodes;

namespace CTCal.Package;

/// <summary>
/// The plugin's <c>.deps.json</c> as the SDK writes it for a portable (RID-neutral) publish: managed files under
/// <c>runtime</c>, native ones per RID under <c>runtimeTargets</c> (<c>runtimes/&lt;rid&gt;/native/...</c>). That is the
/// layout the plugin's AssemblyDependencyResolver reads, so a package keeps it and only drops the other platforms.
/// </summary>
internal sealed class DepsFile
{
    private readonly string _path;
    private readonly JsonObject _root;

    private DepsFile(string path, JsonObject root)
    {
        _path = path;
        _root = root;
    }

    public static DepsFile Load(string path) =>
        new(path, JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new PackageException($"{path}: not a JSON object"));

    private IEnumerable<JsonObject> Libraries =>
        (_root["targets"] as JsonObject ?? throw new PackageException($"{_path}: no targets"))
        .Select(t => t.Value as JsonObject)
        .Where(t => t is not null)
        .SelectMany(t => t!.Select(l => l.Value as JsonObject))
        .Where(l => l is not null)
        .Select(l => l!);

    /// <summary>Managed files (relative to the folder: the SDK flattens them to their file names).</summary>
    public IReadOnlyList<string> ManagedFiles =>
        Libraries.Select(l => l["runtime"] as JsonObject).Where(r => r is not null)
            .SelectMany(r => r!.Select(a => Path.GetFileName(a.Key))).Distinct(StringComparer.Ordinal).ToList();

    /// <summary>Native files for <paramref name="rid"/>, relative to the folder (<c>runtimes/&lt;rid&gt;/native/...</c>).</summary>
    public IReadOnlyList<string> NativeFiles(string rid) =>
        RuntimeTargets().Where(t => t.Rid == rid && t.AssetType == "native").Select(t => t.Path).ToList();

    private IEnumerable<(JsonObject Owner, string Path, string? Rid, string? AssetType)> RuntimeTargets() =>
        Libraries.Select(l => l["runtimeTargets"] as JsonObject).Where(r => r is not null)
            .SelectMany(r => r!.Select(a => (r!, a.Key, a.Value?["rid"]?.GetValue<string>(), a.Value?["assetType"]?.GetValue<string>())))
            .ToList();

    /// <summary>Drops every RID-specific asset that is not for <paramref name="rid"/> (the file and its entry); returns how many.</summary>
    public int KeepOnly(string rid, string folder)
    {
        int removed = 0;
        foreach (var (owner, path, assetRid, _) in RuntimeTargets())
        {
            if (assetRid == rid)
            {
                continue;
            }

            owner.Remove(path);
            string file = Path.Combine(folder, path);
            if (File.Exists(file))
            {
                File.Delete(file);
            }

            removed++;
        }

        string runtimes = Path.Combine(folder, "runtimes");
        if (Directory.Exists(runtimes))
        {
            foreach (string dir in Directory.GetDirectories(runtimes).Where(d => Path.GetFileName(d) != rid))
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        return removed;
    }

    /// <summary>
    /// Removes the files named <paramref name="fileNames"/> from a RID-specific deps file's <c>native</c> sections and from
    /// <paramref name="folder"/> (where such a publish flattens them); returns the names removed.
    /// </summary>
    public IReadOnlyList<string> RemoveNative(IReadOnlyCollection<string> fileNames, string folder)
    {
        var removed = new List<string>();
        foreach (var native in Libraries.Select(l => l["native"]).OfType<JsonObject>().ToList())
        {
            foreach (string path in native.Select(a => a.Key).Where(k => fileNames.Contains(Path.GetFileName(k))).ToList())
            {
                native.Remove(path);
                string file = Path.Combine(folder, Path.GetFileName(path));
                if (File.Exists(file))
                {
                    File.Delete(file);
                }

                removed.Add(Path.GetFileName(path));
            }
        }

        return removed;
    }

    public void Save() =>
        File.WriteAllText(_path, _root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
}

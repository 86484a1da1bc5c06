using System.Diagnostics;
using System.IO.Compression;
using CTCal.Build;

namespace CTCal.Package;

/// <summary>
/// Builds one plugin package per RID:
/// <list type="number">
/// <item>the plugin, published RID-neutral so its deps file keeps native files under <c>runtimes/&lt;rid&gt;/native</c>
/// (where its load context resolves them), then pruned to the one RID;</item>
/// <item>with ReadyToRun, the same managed files precompiled for the RID (a second, RID-specific publish) copied over the
/// IL ones (same names and identities, so the deps file still describes them);</item>
/// <item>the trainer (<c>ctcal-train</c>) published self-contained for the RID into <c>trainer/</c>, libtorch for that
/// platform included, less the native files nothing loads (<see cref="PackageLayout.UnusedTrainerFiles"/>); on linux-x64
/// its libLibTorchSharp.so always gets the libstdc++ fix (build/TorchSharpLinuxFix.targets);</item>
/// <item>the manifest <c>ctcal-plugin.json</c>, then the zip.</item>
/// </list>
/// Nothing is trimmed: the plugin is found and composed by reflection (MEF) in a host's process, and the trainer's TorchSharp
/// and NLog bind by reflection too (docs/packaging.md).
/// </summary>
public sealed class PackageBuilder
{
    private const string PluginProject = "src/CTCal.Plugin/CTCal.Plugin.csproj";
    private const string TrainerProject = "src/CTCal.Trainer.Cli/CTCal.Trainer.Cli.csproj";

    private readonly PackageOptions _options;
    private readonly TextWriter _log;

    public PackageBuilder(PackageOptions options, TextWriter log)
    {
        _options = options;
        _log = log;
    }

    /// <summary>The isolated build folder (artifacts, intermediate publishes), removed by <see cref="BuildAll"/> when done.</summary>
    public string WorkFolder => Path.Combine(Path.GetFullPath(_options.OutputFolder), ".work");

    public IReadOnlyList<PackageResult> BuildAll()
    {
        foreach (string rid in _options.Rids)
        {
            if (!PackageLayout.SupportedRids.Contains(rid))
            {
                throw new PackageException($"unsupported runtime identifier '{rid}' (supported: {string.Join(", ", PackageLayout.SupportedRids)})");
            }
        }

        var results = new List<PackageResult>();
        try
        {
            foreach (string rid in _options.Rids)
            {
                results.Add(Build(rid));
            }
        }
        finally
        {
            if (Directory.Exists(WorkFolder))
            {
                Directory.Delete(WorkFolder, recursive: true);
            }
        }

        return results;
    }

    private PackageResult Build(string rid)
    {
        var watch = Stopwatch.StartNew();
        string output = Path.GetFullPath(_options.OutputFolder);
        var dotnet = new DotnetCli(_options.RepoRoot, Path.Combine(WorkFolder, "artifacts"), _log);
        string gpu = $"-p:CTCalGpu={_options.Gpu}";
        string[] framework = _options.PluginFramework is { } tfm ? [gpu, $"-p:CTCalLibraryTarget={tfm}"] : [gpu];
        _log.WriteLine($"== {rid} (ReadyToRun {(_options.ReadyToRun ? "on" : "off")}, CTCalGpu={_options.Gpu}, plugin for {_options.PluginFramework ?? "its default framework"})");

        // 1. The plugin, RID-neutral, into a staging folder named after the plugin id once it is known.
        string staging = Path.Combine(WorkFolder, $"plugin-{rid}");
        Reset(staging);
        dotnet.Publish(PluginProject, staging, framework);
        var deps = DepsFile.Load(Path.Combine(staging, PackageLayout.PluginDeps));
        int dropped = deps.KeepOnly(rid, staging);
        deps.Save();
        _log.WriteLine($"  kept {rid}'s native files, dropped {dropped} of other platforms");
        var manifest = PluginManifest.FromAssembly(Path.Combine(staging, PackageLayout.PluginAssembly), rid, _options.ReadyToRun);
        string folder = Path.Combine(output, rid, PackageLayout.FolderName(manifest.Id));
        Reset(folder);
        Directory.Delete(folder);
        Directory.Move(staging, folder);

        // 2. ReadyToRun code for the plugin's managed files.
        if (_options.ReadyToRun)
        {
            string r2r = Path.Combine(WorkFolder, $"plugin-r2r-{rid}");
            Reset(r2r);
            dotnet.Publish(PluginProject, r2r, ["-r", rid, "--self-contained", "false", "-p:PublishReadyToRun=true", .. framework]);
            foreach (string file in deps.ManagedFiles)
            {
                string compiled = Path.Combine(r2r, file);
                if (!File.Exists(compiled))
                {
                    throw new PackageException($"ReadyToRun publish for {rid} has no {file} (the deps file lists it)");
                }

                File.Copy(compiled, Path.Combine(folder, file), overwrite: true);
            }
        }

        // 3. The trainer sidecar, self-contained.
        string trainer = Path.Combine(folder, PackageLayout.TrainerFolder);
        dotnet.Publish(TrainerProject, trainer, "-r", rid, "--self-contained", "true", $"-p:PublishReadyToRun={(_options.ReadyToRun ? "true" : "false")}", gpu);
        if (!File.Exists(Path.Combine(trainer, PackageLayout.TrainerExecutable(rid))))
        {
            throw new PackageException($"trainer publish for {rid} wrote no {PackageLayout.TrainerExecutable(rid)} in {trainer}");
        }

        var trainerDeps = DepsFile.Load(Path.Combine(trainer, "ctcal-train.deps.json"));
        var unused = trainerDeps.RemoveNative([.. PackageLayout.UnusedTrainerFiles], trainer);
        trainerDeps.Save();
        _log.WriteLine($"  left out of the trainer (not loaded at run time): {(unused.Count == 0 ? "nothing" : string.Join(", ", unused))}");

        if (rid.StartsWith("linux", StringComparison.Ordinal))
        {
            foreach (string library in Directory.GetFiles(trainer, "libLibTorchSharp.so", SearchOption.AllDirectories))
            {
                // Harmless where libstdc++ has GLIBCXX_3.4.32; needed where it does not (Debian 12), whatever machine built the package.
                var outcome = GlibcxxWeakVersionPatch.PatchFile(library, "GLIBCXX_3.4.32");
                _log.WriteLine($"  {Path.GetRelativePath(folder, library)}: GLIBCXX_3.4.32 requirement {outcome}");
            }
        }

        // 4. The manifest beside the DLL.
        File.WriteAllText(Path.Combine(folder, PackageLayout.ManifestFile), manifest.ToJson());

        // 5. The zip: one top folder named after the plugin id, Unix permissions kept (the trainer stays executable).
        string? zip = null;
        if (_options.Zip)
        {
            zip = Path.Combine(output, PackageLayout.ZipName(manifest.Id, manifest.Version, rid));
            File.Delete(zip);
            ZipFile.CreateFromDirectory(folder, zip, CompressionLevel.Optimal, includeBaseDirectory: true);
        }

        var result = new PackageResult(rid, folder, zip, manifest, PackageResult.SizeOf(folder), zip is null ? null : new FileInfo(zip).Length, PackageResult.SizeOf(trainer));
        _log.WriteLine($"  {result} in {watch.Elapsed.TotalMinutes:F1} min");
        return result;
    }

    private static void Reset(string folder)
    {
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        Directory.CreateDirectory(folder);
    }
}

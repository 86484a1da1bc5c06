using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using CTCal.Tests;

namespace CTCal.Package.Tests;

/// <summary>
/// A fresh host folder holding only ctcal-host's own files (those its deps file names, copied from this test's output),
/// into which a plugin package is installed the documented way: unzip it into plugins/ and add one plugins.json entry.
/// Commands run as <c>dotnet ctcal-host.dll ...</c> from that folder, arguments as a list, with a PATH that has no trainer.
/// </summary>
internal sealed class InstalledHost : IDisposable
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(10);

    public InstalledHost()
    {
        Root = TestPaths.NewTempDir("ctcal-installed");
        CopyHostFiles(AppContext.BaseDirectory, Root);
        Directory.CreateDirectory(TempFolder);
    }

    public string Root { get; }

    /// <summary>The host processes' TMPDIR: the fine-tune must leave nothing there.</summary>
    public string TempFolder => Path.Combine(Root, "tmp");

    public string PluginsFile => Path.Combine(Root, "plugins.json");

    /// <summary>Copies ctcal-host.dll, its deps/runtimeconfig files, nlog.config and every runtime file of its deps file.</summary>
    private static void CopyHostFiles(string from, string to)
    {
        var files = new List<string> { "ctcal-host.dll", "ctcal-host.deps.json", "ctcal-host.runtimeconfig.json", "nlog.config" };
        using (var deps = JsonDocument.Parse(File.ReadAllText(Path.Combine(from, "ctcal-host.deps.json"))))
        {
            foreach (var target in deps.RootElement.GetProperty("targets").EnumerateObject())
            {
                foreach (var library in target.Value.EnumerateObject())
                {
                    if (library.Value.TryGetProperty("runtime", out var runtime))
                    {
                        files.AddRange(runtime.EnumerateObject().Select(a => Path.GetFileName(a.Name)));
                    }
                }
            }
        }

        foreach (string file in files.Distinct(StringComparer.Ordinal))
        {
            File.Copy(Path.Combine(from, file), Path.Combine(to, file));
        }
    }

    /// <summary>Installs <paramref name="zip"/>: extracts it into plugins/ (its one top folder is the plugin folder).</summary>
    public string InstallZip(string zip)
    {
        string plugins = Path.Combine(Root, "plugins");
        Directory.CreateDirectory(plugins);
        using (var archive = ZipFile.OpenRead(zip))
        {
            var tops = archive.Entries.Select(e => e.FullName.Split('/')[0]).Distinct().ToList();
            if (tops.Count != 1)
            {
                throw new InvalidDataException($"{zip} has {tops.Count} top-level entries, expected one folder");
            }
        }

        ZipFile.ExtractToDirectory(zip, plugins);
        return Directory.GetDirectories(plugins).Single();
    }

    /// <summary>Writes plugins.json with one entry for the plugin in <paramref name="pluginFolder"/> (no trainerPath).</summary>
    public void WritePluginsJson(string id, string pluginFolder, string assembly)
    {
        var entry = new
        {
            id,
            path = Path.GetRelativePath(Root, pluginFolder).Replace('\\', '/'),
            assembly,
            enabled = true,
            settings = new { modelsFolder = "models", executionProviders = new[] { "cpu" }, intraOpThreads = 1 },
        };
        File.WriteAllText(PluginsFile, JsonSerializer.Serialize(new { version = 1, plugins = new[] { entry } }, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Runs ctcal-host with <paramref name="arguments"/>; returns its exit code and stdout+stderr.</summary>
    public (int Code, string Output) Run(params string[] arguments)
    {
        var start = new ProcessStartInfo(DotnetApp.Host())
        {
            WorkingDirectory = Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(Root, "ctcal-host.dll"));
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // No ctcal-train on PATH: the plugin must find the packaged one. The temp folder is the host's own.
        start.Environment["PATH"] = string.Join(Path.PathSeparator, "/usr/bin", "/bin");
        start.Environment["TMPDIR"] = TempFolder;
        start.Environment["TMP"] = TempFolder;
        start.Environment["TEMP"] = TempFolder;
        start.Environment.Remove("CTCAL_LOG_DIR");

        using var process = Process.Start(start) ?? throw new InvalidOperationException("ctcal-host did not start");
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(HangGuard))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"ctcal-host {string.Join(' ', arguments)} did not end within {HangGuard} (a hang guard, not a timing check):\n{output}");
        }

        process.WaitForExit();
        lock (output)
        {
            return (process.ExitCode, output.ToString());
        }
    }

    public void Dispose()
    {
        if (Directory.Exists(Root))
        {
            Directory.Delete(Root, recursive: true);
        }
    }
}

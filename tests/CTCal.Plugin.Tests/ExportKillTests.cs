using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Plugin.Tests;

/// <summary>
/// Kills the real <c>ctcal-export export</c> process (SIGKILL) while it writes an export of the tiny-sd1 fixture into a
/// plugin's models folder, at several points after its staging folder appears; after every kill the plugin lists only
/// complete models and still generates with the other one; a re-export then works.
/// </summary>
public sealed class ExportKillTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-export-kill");
    private readonly List<PluginRuntime> _runtimes = [];

    public void Dispose()
    {
        foreach (var runtime in _runtimes) runtime.Dispose();
        Directory.Delete(_root, true);
    }

    private string Models => Path.Combine(_root, "models");

    private OnnxImageGenerator Generator()
    {
        var runtime = new PluginRuntime(new PluginSettings
        {
            ModelsFolder = Models, ExecutionProviders = [ExecutionProviderKind.Cpu], IntraOpThreads = 1, InterOpThreads = 1,
        }, new RecordingLog());
        _runtimes.Add(runtime);
        return new OnnxImageGenerator(runtime);
    }

    private static Process StartExport(string outFolder)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "ctcal-export.dll"), "export", "--model", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--out", outFolder })
            start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Starts an export into models/exported and kills it <paramref name="delayMs"/> after its staging folder appears.</summary>
    private (bool Killed, string[] Hidden) ExportAndKill(int delayMs)
    {
        using var watcher = new FileSystemWatcher(Models) { Filter = ".exported.partial-*" };
        using var staged = new ManualResetEventSlim();
        watcher.Created += (_, _) => staged.Set();
        watcher.EnableRaisingEvents = true;
        using var process = StartExport(Path.Combine(Models, "exported"));
        bool killed = false;
        if (staged.Wait(TimeSpan.FromMinutes(2)))
        {
            if (delayMs > 0) Thread.Sleep(delayMs);
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    killed = true;
                }
            }
            catch (InvalidOperationException)
            {
                // finished just before the kill
            }
        }
        Assert.True(process.WaitForExit(120_000), "ctcal-export did not exit");
        process.WaitForExit();
        if (!killed) Assert.Equal(0, process.ExitCode);
        return (killed && process.ExitCode != 0, Directory.GetDirectories(Models, ".*").Select(d => Path.GetFileName(d)!).ToArray());
    }

    private static void CopyFolder(string from, string to)
    {
        foreach (string file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    [Fact]
    public async Task AKilledExportNeverShowsAPartialModelAndTheOthersKeepWorking()
    {
        TinySdModel.Create(Models, "tiny");
        var request = new GenerationRequest { Model = "tiny", Prompt = "a cube", Width = 64, Height = 48, Steps = 2, Seed = 3 };
        byte[] reference = (await Generator().GenerateAsync(request)).Images[0].Png;

        int kills = 0, partialLeft = 0;
        foreach (int delayMs in new[] { 0, 10, 20, 35, 50, 70, 90, 120 })
        {
            var (killed, hidden) = ExportAndKill(delayMs);
            kills += killed ? 1 : 0;
            partialLeft += hidden.Length > 0 ? 1 : 0;
            output.WriteLine($"kill {delayMs} ms after staging: {(killed ? "killed" : "finished first")}; hidden folders left: {string.Join(", ", hidden)}; " +
                $"models/exported {(Directory.Exists(Path.Combine(Models, "exported")) ? "exists" : "absent")}");

            var generator = Generator();
            var models = await generator.ListModelsAsync();
            Assert.Contains(models, m => m.Id == "tiny");
            Assert.All(models, m => Assert.False(m.Id.StartsWith('.'), $"hidden folder listed as model '{m.Id}'"));
            Assert.All(models, m => Assert.Contains(m.Id, new[] { "tiny", "exported" }));
            if (models.Any(m => m.Id == "exported"))
            {
                // Visible only once complete: it generates.
                Assert.NotEmpty((await generator.GenerateAsync(request with { Model = "exported", Width = 32, Height = 32 })).Images[0].Png);
            }
            Assert.Equal(reference, (await generator.GenerateAsync(request)).Images[0].Png);
            if (Directory.Exists(Path.Combine(Models, "exported")) && delayMs < 50)
                Directory.Delete(Path.Combine(Models, "exported"), true); // start the next kill from scratch, except the last ones (replace an existing export)
        }
        output.WriteLine($"{kills} kills, {partialLeft} left a hidden staging folder behind");
        Assert.True(kills >= 4, $"only {kills} of the exports were killed before they finished");

        // A complete model under a hidden name (what a kill between the exporter's two renames leaves: '.<id>.old-…') is not listed.
        CopyFolder(Path.Combine(Models, "tiny"), Path.Combine(Models, ".tiny.old-0123"));
        Assert.DoesNotContain(await Generator().ListModelsAsync(), m => m.Id.StartsWith('.'));

        // A re-export over whatever is left works and the model is served.
        using (var again = StartExport(Path.Combine(Models, "exported")))
        {
            Assert.True(again.WaitForExit(120_000));
            again.WaitForExit();
            Assert.Equal(0, again.ExitCode);
        }
        var final = Generator();
        Assert.Contains(await final.ListModelsAsync(), m => m.Id == "exported");
        Assert.NotEmpty((await final.GenerateAsync(request with { Model = "exported", Width = 32, Height = 32 })).Images[0].Png);
    }
}

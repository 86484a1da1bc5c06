using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Core.Diagnostics;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Plugin.Tests;

/// <summary>
/// Kills the real <c>ctcal-export export</c> process (SIGKILL, through the exporter's named fault points armed with
/// <c>CTCAL_FAULT_KILL</c>, so every kill lands where it is meant to on every run) while it writes an export of the
/// tiny-sd1 fixture into a plugin's models folder, beside a hand-made <c>tiny</c> model. After every kill the plugin lists
/// only complete models and still generates with the other one; a kill while replacing an export leaves a complete model
/// listed; the next export (or the plugin's scan) removes what killed exports left behind.
/// </summary>
public sealed class ExportKillTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>The points of a first export into an empty target, in the order the exporter reaches them.</summary>
    private static readonly string[] FreshPoints =
    [
        "export.part-written:text_encoder", "export.part-written:unet", "export.part-written:vae_decoder", "export.part-written:vae_encoder",
        "export.staged",
    ];

    /// <summary>The points of an export that replaces an existing one.</summary>
    private static readonly string[] ReplacingPoints = ["export.part-written:unet", "export.staged", "export.between-renames", "export.swapped"];

    private readonly string _root = TestPaths.NewTempDir("ctcal-export-kill");
    private readonly List<PluginRuntime> _runtimes = [];

    public void Dispose()
    {
        foreach (var runtime in _runtimes) runtime.Dispose();
        Directory.Delete(_root, true);
    }

    private string Models => Path.Combine(_root, "models");

    private string Exported => Path.Combine(Models, "exported");

    private static GenerationRequest Request => new() { Model = "tiny", Prompt = "a cube", Width = 64, Height = 48, Steps = 2, Seed = 3 };

    private OnnxImageGenerator Generator()
    {
        var runtime = new PluginRuntime(new PluginSettings
        {
            ModelsFolder = Models, ExecutionProviders = [ExecutionProviderKind.Cpu], IntraOpThreads = 1, InterOpThreads = 1,
        }, new RecordingLog());
        _runtimes.Add(runtime);
        return new OnnxImageGenerator(runtime);
    }

    private sealed record ExportRun(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs <c>ctcal-export export</c> of tiny-sd1 into models/exported to its end, armed to die at <paramref name="killAt"/>.</summary>
    private ExportRun RunExport(string? killAt)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "ctcal-export.dll"), "export", "--model", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--out", Exported })
            start.ArgumentList.Add(a);
        start.Environment.Remove(FaultPoints.Variable);
        if (killAt is not null) start.Environment[FaultPoints.Variable] = killAt;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "ctcal-export did not exit within 2 minutes"); // a hang guard, not a race
        process.WaitForExit();
        var run = new ExportRun(process.ExitCode, stdout.Result, stderr.Result);
        output.WriteLine($"{killAt ?? "no kill"}: exit {run.ExitCode}; hidden entries now: {string.Join(", ", Hidden())}");
        return run;
    }

    /// <summary>The process died by SIGKILL (exit code 128 + 9) at <paramref name="point"/>, as the hook's last line says.</summary>
    private static void AssertKilledAt(ExportRun run, string point)
    {
        Assert.True(run.ExitCode == 137, $"expected a kill at {point} (exit 137), got exit {run.ExitCode}; stderr: {run.Stderr}");
        Assert.Contains($"fault injection: killed at '{point}'", run.Stderr);
    }

    private static void AssertFinished(ExportRun run) => Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}; stdout: {run.Stdout}; stderr: {run.Stderr}");

    private string[] Hidden() => Directory.Exists(Models)
        ? Directory.GetFileSystemEntries(Models, ".*").Select(e => Path.GetFileName(e)!).Order(StringComparer.Ordinal).ToArray()
        : [];

    /// <summary>
    /// What a fresh plugin sees: <c>tiny</c> listed and generating <paramref name="reference"/>; <c>exported</c> listed
    /// (and generating) exactly when <paramref name="exportedListed"/>; nothing else, no hidden folder.
    /// </summary>
    private async Task AssertCatalog(byte[] reference, bool exportedListed)
    {
        var generator = Generator();
        var models = await generator.ListModelsAsync();
        Assert.Equal(exportedListed ? ["exported", "tiny"] : ["tiny"], models.Select(m => m.Id).Order(StringComparer.Ordinal));
        if (exportedListed)
            Assert.NotEmpty((await generator.GenerateAsync(Request with { Model = "exported", Width = 32, Height = 32 })).Images[0].Png);
        Assert.Equal(reference, (await generator.GenerateAsync(Request)).Images[0].Png);
    }

    [Fact]
    public async Task EveryKillLandsAndOnlyCompleteModelsAreEverListed()
    {
        TinySdModel.Create(Models, "tiny");
        byte[] reference = (await Generator().GenerateAsync(Request)).Images[0].Png;

        foreach (string point in FreshPoints)
        {
            AssertKilledAt(RunExport(point), point);
            await AssertCatalog(reference, exportedListed: false);
        }

        AssertFinished(RunExport(killAt: null));
        await AssertCatalog(reference, exportedListed: true);

        // Killed while replacing that export: a complete model stays listed at every point, also between the two renames.
        foreach (string point in ReplacingPoints)
        {
            AssertKilledAt(RunExport(point), point);
            await AssertCatalog(reference, exportedListed: true);
        }
    }

    [Fact]
    public async Task AKillBetweenTheRenamesLeavesTheNewModelCompleteAndListed()
    {
        AssertFinished(RunExport(killAt: null));
        string before = File.ReadAllText(Path.Combine(Exported, "ctcal_manifest.json"));

        AssertKilledAt(RunExport("export.between-renames"), "export.between-renames");
        Assert.False(Directory.Exists(Exported), "the kill was meant to land after the old model was moved aside");
        string[] old = Directory.GetDirectories(Models, ".exported.old-*");
        string[] staged = Directory.GetDirectories(Models, ".exported.partial-*");
        Assert.Equal(before, File.ReadAllText(Path.Combine(Assert.Single(old), "ctcal_manifest.json")));
        string killed = File.ReadAllText(Path.Combine(Assert.Single(staged), "ctcal_manifest.json"));
        Assert.NotEqual(before, killed);

        // The plugin's scan completes the swap the dead exporter had started (its staging folder was complete), then
        // removes the previous model it had moved aside: the new model is listed, whole, and generates.
        var generator = Generator();
        var model = Assert.Single(await generator.ListModelsAsync());
        Assert.Equal("exported", model.Id);
        Assert.Equal(killed, File.ReadAllText(Path.Combine(Exported, "ctcal_manifest.json")));
        Assert.NotEmpty((await generator.GenerateAsync(Request with { Model = "exported", Width = 32, Height = 32 })).Images[0].Png);
        Assert.Empty(Hidden());
    }

    /// <summary>
    /// An export still running (here: one this test process has begun and not finished, holding its lock) is never
    /// cleaned up: not by the plugin's scan, not by a <c>ctcal-export</c> of the same model in another process.
    /// </summary>
    [Fact]
    public async Task ALiveExportIsLeftAloneByTheScanAndByAnotherExport()
    {
        using var live = CTCal.Export.ModelFolderSwap.Begin(Exported);
        File.WriteAllText(Path.Combine(live.StagingFolder, "being-written.txt"), "live");
        string[] hidden = Hidden();
        Assert.Equal(2, hidden.Length);

        Assert.Empty(await Generator().ListModelsAsync());
        AssertFinished(RunExport(killAt: null));
        Assert.Equal("exported", Assert.Single(await Generator().ListModelsAsync()).Id);
        Assert.Equal(hidden, Hidden());
        Assert.Equal("live", File.ReadAllText(Path.Combine(live.StagingFolder, "being-written.txt")));

        live.Dispose(); // given up: its own staging folder and lock go with it
        Assert.Empty(Hidden());
    }

    [Fact]
    public async Task TheNextExportRemovesWhatKilledExportsLeftBehind()
    {
        foreach (string point in new[] { "export.part-written:unet", "export.staged" })
            AssertKilledAt(RunExport(point), point);
        Assert.NotEmpty(Hidden());
        AssertFinished(RunExport(killAt: null));
        Assert.Empty(Hidden());

        foreach (string point in ReplacingPoints)
            AssertKilledAt(RunExport(point), point);
        Assert.NotEmpty(Hidden());
        AssertFinished(RunExport(killAt: null));
        Assert.Empty(Hidden());

        var generator = Generator();
        Assert.Equal("exported", Assert.Single(await generator.ListModelsAsync()).Id);
        Assert.NotEmpty((await generator.GenerateAsync(Request with { Model = "exported", Width = 32, Height = 32 })).Images[0].Png);
    }
}

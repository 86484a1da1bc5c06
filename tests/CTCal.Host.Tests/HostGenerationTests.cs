using CTCal.Contracts;
using CTCal.Hosting;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>Generation through the plugin loaded from a copied folder, across the load-context boundary.</summary>
public sealed class HostGenerationTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-hostgen");

    public void Dispose() => Directory.Delete(_root, true);

    private PluginHost Load(object settings, RecordingLog log)
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        string file = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx", settings));
        return PluginHost.Load(PluginsFile.Load(file), log, _ => log);
    }

    private static GenerationRequest Request(long seed) => new()
    {
        Model = "tiny",
        Prompt = "a photo of a cat next to a dog",
        Width = 64,
        Height = 64,
        Steps = 3,
        Seed = seed,
    };

    [Fact]
    public async Task EightConcurrentRequestsGiveTheSameImagesAsSequentialOnes()
    {
        var log = new RecordingLog();
        using var host = Load(new { modelsFolder = "models", executionProviders = new[] { "cpu" }, intraOpThreads = 1 }, log);
        var generator = Assert.Single(host.Generators).Value;

        var sequential = new List<byte[]>();
        for (int i = 0; i < 8; i++)
        {
            sequential.Add((await generator.GenerateAsync(Request(i))).Images[0].Png);
        }

        var concurrent = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(() => generator.GenerateAsync(Request(i)))));
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(sequential[i], concurrent[i].Images[0].Png);
            Assert.Equal("CPU", concurrent[i].ExecutionProvider);
        }

        Assert.Equal(8, sequential.Select(Convert.ToBase64String).Distinct().Count());

        // ONNX Runtime's native library was resolved from the plugin's own folder.
        if (OperatingSystem.IsLinux())
        {
            string maps = File.ReadAllText("/proc/self/maps");
            Assert.Contains(Path.Combine(_root, "plugins", "onnx", "runtimes"), maps);
        }
    }

    [Fact]
    public async Task RequestedGpuProviderFallsBackToCpuAndTheHostSeesTheWarning()
    {
        var log = new RecordingLog();
        using var host = Load(new { modelsFolder = "models", executionProviders = new[] { "cuda", "cpu" } }, log);
        var result = await Assert.Single(host.Generators).Value.GenerateAsync(Request(1));
        Assert.Equal("CPU", result.ExecutionProvider);
        Assert.Contains(result.Warnings, w => w.Contains("CUDA"));
        Assert.Contains(log.Entries, e => e.Severity == LogSeverity.Warning && e.Message.Contains("CUDA"));
    }
}

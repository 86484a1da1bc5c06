using System.Runtime.Loader;
using CTCal.Contracts;
using CTCal.Hosting;
using CTCal.Tests;
using Xunit;

namespace CTCal.Hosting.Tests;

public sealed class PluginHostTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-host");

    public void Dispose() => Directory.Delete(_root, true);

    [Fact]
    public async Task DiscoversThePluginFromACopiedFolderInItsOwnLoadContext()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        string file = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));

        var log = new RecordingLog();
        using var host = PluginHost.Load(PluginsFile.Load(file), log, _ => log);

        var plugin = Assert.Single(host.Plugins);
        var generator = Assert.Single(plugin.Generators);
        Assert.Equal("ctcal.onnx.generator", generator.Metadata.Id);
        Assert.False(string.IsNullOrEmpty(generator.Metadata.Name));
        Assert.False(string.IsNullOrEmpty(generator.Metadata.Version));

        // The plugin runs in its own context; the contract type is the host's one copy.
        var pluginContext = AssemblyLoadContext.GetLoadContext(generator.Value.GetType().Assembly);
        Assert.IsType<PluginLoadContext>(pluginContext);
        Assert.NotSame(AssemblyLoadContext.Default, pluginContext);
        Assert.Same(AssemblyLoadContext.Default, AssemblyLoadContext.GetLoadContext(typeof(IImageGenerator).Assembly));
        Assert.DoesNotContain(pluginContext!.Assemblies, a => a.GetName().Name == "CTCal.Contracts");
        Assert.False(File.Exists(Path.Combine(_root, "plugins", "onnx", "CTCal.Contracts.dll")));
        Assert.False(File.Exists(Path.Combine(_root, "plugins", "onnx", "System.Composition.AttributedModel.dll")));

        var models = await generator.Value.ListModelsAsync();
        var model = Assert.Single(models);
        Assert.Equal("tiny", model.Id);
        Assert.Equal("Tiny tiny", model.Name);
        Assert.Equal(64, model.DefaultWidth);
    }

    [Theory]
    [InlineData("CTCal.Contracts", true)]
    [InlineData("System.Composition.AttributedModel", true)]
    [InlineData("System.Composition.Runtime", true)]
    [InlineData("System.Text.Json", true)]
    [InlineData("CTCal.Core", false)]
    [InlineData("Microsoft.ML.OnnxRuntime", false)]
    public void OnlyTheBoundaryAssembliesAreShared(string name, bool shared) =>
        Assert.Equal(shared, PluginLoadContext.IsShared(new System.Reflection.AssemblyName(name)));

    [Fact]
    public async Task BrokenPluginsAreReportedWhileTheGoodOneKeepsWorking()
    {
        PluginFolders.CopyPlugin(_root, "good");
        PluginFolders.CopyPlugin(_root, "throws");
        Directory.CreateDirectory(Path.Combine(_root, "plugins", "empty"));
        PluginFolders.CopyPlugin(_root, "garbage");
        File.WriteAllText(Path.Combine(_root, "plugins", "garbage", "CTCal.Plugin.dll"), "not an assembly");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        string file = PluginFolders.WritePluginsJson(
            _root,
            PluginFolders.Entry("throws", "throws", new { memoryMode = "turbo" }), // its constructor throws
            PluginFolders.Entry("empty", "empty"),                                // no dll
            PluginFolders.Entry("garbage", "garbage"),                            // not loadable
            PluginFolders.Entry("good", "good"),
            PluginFolders.Entry("off", "missing-but-disabled", enabled: false));

        var log = new RecordingLog();
        using var host = PluginHost.Load(PluginsFile.Load(file), log, _ => log);

        var good = Assert.Single(host.Plugins);
        Assert.Equal("good", good.Entry.Id);
        var models = await Assert.Single(good.Generators).Value.ListModelsAsync();
        Assert.Equal("tiny", Assert.Single(models).Id);

        var throws = host.Failures.Where(f => f.PluginId == "throws").ToArray();
        Assert.NotEmpty(throws);
        Assert.Contains(throws, f => f.ToString().Contains("settings.memoryMode") && f.ToString().Contains(file));
        Assert.Contains(host.Failures, f => f.PluginId == "empty" && f.Error is FileNotFoundException);
        Assert.Contains(host.Failures, f => f.PluginId == "garbage" && f.What == "load");
        Assert.DoesNotContain(host.Failures, f => f.PluginId == "off");
        Assert.Contains(log.Entries, e => e.Severity == LogSeverity.Error && e.Message.Contains("throws"));
    }
}

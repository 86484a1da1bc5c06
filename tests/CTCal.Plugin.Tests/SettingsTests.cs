using System.Text.Json;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

public class SettingsTests
{
    private static PluginSettings Parse(string json, string baseDir)
    {
        using var doc = JsonDocument.Parse(json);
        return PluginSettings.Parse(doc.RootElement.Clone(), baseDir, "/cfg/plugins.json");
    }

    [Fact]
    public void ReadsAllFields()
    {
        string root = TestPaths.NewTempDir();
        var s = Parse("""{ "modelsFolder": "m/x", "defaultScheduler": "ddim", "executionProviders": ["DirectML","cpu"], "intraOpThreads": 2, "interOpThreads": 1, "memoryMode": "low" }""", root);
        Assert.Equal(Path.Combine(root, "m", "x"), s.ModelsFolder);
        Assert.Equal("ddim", s.DefaultScheduler);
        Assert.Equal(new[] { ExecutionProviderKind.DirectML, ExecutionProviderKind.Cpu }, s.ExecutionProviders);
        Assert.Equal(2, s.IntraOpThreads);
        Assert.Equal(1, s.InterOpThreads);
        Assert.Equal(MemoryMode.Low, s.MemoryMode);
        Assert.Null(s.MemoryLimitMiB);
        Assert.Equal(512, Parse("""{ "memoryLimitMiB": 512 }""", root).MemoryLimitMiB);
        Assert.Null(Parse("""{ "memoryLimitMiB": null }""", root).MemoryLimitMiB);
        Assert.False(s.WarmUpAll);
        Assert.Empty(s.WarmUpModels);
        Assert.True(Parse("""{ "warmUp": true }""", root).WarmUpAll);
        Assert.False(Parse("""{ "warmUp": false }""", root).WarmUpAll);
        Assert.Equal(new[] { "sd15" }, Parse("""{ "warmUp": "sd15" }""", root).WarmUpModels);
        var listed = Parse("""{ "warmUp": ["a", "b", "a"] }""", root);
        Assert.False(listed.WarmUpAll);
        Assert.Equal(new[] { "a", "b" }, listed.WarmUpModels);
        Assert.Null(s.ExportOptimize); // auto
        Assert.Equal(CTCal.Export.ExportPrecision.Fp32, s.ExportPrecision);
        Assert.Null(s.ExportStepCache);
        var export = Parse("""{ "exportOptimize": "DirectML", "exportPrecision": "fp16", "exportStepCache": false }""", root);
        Assert.Equal(CTCal.Export.ExportOptimization.DirectML, export.ExportOptimize);
        Assert.Equal(CTCal.Export.ExportPrecision.Fp16, export.ExportPrecision);
        Assert.False(export.ExportStepCache);
        Assert.Null(Parse("""{ "exportOptimize": "auto", "exportStepCache": null }""", root).ExportOptimize);
        Assert.True(Parse("""{ "exportStepCache": true }""", root).ExportStepCache);
        Assert.Equal(CTCal.Export.ExportPrecision.Fp16Weights, Parse("""{ "exportPrecision": "fp16-weights" }""", root).ExportPrecision);
        Directory.Delete(root, true);
    }

    /// <summary>The repository's own plugins.json (the README's commands use it, and it shows the settings) is valid.</summary>
    [Fact]
    public void TheRepositorysPluginsJsonSettingsParse()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "plugins.json")));
        var entry = doc.RootElement.GetProperty("plugins")[0];
        Assert.Equal("CTCal.Plugin.dll", entry.GetProperty("assembly").GetString());
        string root = TestPaths.NewTempDir();
        try
        {
            var s = PluginSettings.Parse(entry.GetProperty("settings").Clone(), root, "plugins.json");
            Assert.Null(s.ExportOptimize); // "auto"
            Assert.Null(s.ExportStepCache);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Theory]
    [InlineData("""{ "memoryMode": "turbo" }""", "settings.memoryMode")]
    [InlineData("""{ "executionProviders": ["tpu"] }""", "settings.executionProviders[0]")]
    [InlineData("""{ "executionProviders": "cpu" }""", "settings.executionProviders")]
    [InlineData("""{ "intraOpThreads": -1 }""", "settings.intraOpThreads")]
    [InlineData("""{ "modelsFolder": 3 }""", "settings.modelsFolder")]
    [InlineData("""{ "modelsFolder": "../outside" }""", "settings.modelsFolder")]
    [InlineData("""{ "modelsFolder": "/abs/models" }""", "settings.modelsFolder")]
    [InlineData("""{ "modelFolder": "models" }""", "settings.modelFolder")]
    [InlineData("""{ "memoryLimitMiB": 0 }""", "settings.memoryLimitMiB")]
    [InlineData("""{ "memoryLimitMiB": 4096 }""", "settings.memoryLimitMiB")]
    [InlineData("""{ "memoryLimitMiB": 1.5 }""", "settings.memoryLimitMiB")]
    [InlineData("""{ "memoryLimitMiB": "512" }""", "settings.memoryLimitMiB")]
    [InlineData("""{ "warmUp": 1 }""", "settings.warmUp")]
    [InlineData("""{ "warmUp": "" }""", "settings.warmUp")]
    [InlineData("""{ "warmUp": "../up" }""", "settings.warmUp")]
    [InlineData("""{ "warmUp": ["a", 2] }""", "settings.warmUp[1]")]
    [InlineData("""{ "warmUp": { "model": "a" } }""", "settings.warmUp")]
    [InlineData("""{ "warmup": true }""", "settings.warmup")]
    [InlineData("""{ "exportOptimize": "fast" }""", "settings.exportOptimize")]
    [InlineData("""{ "exportOptimize": 1 }""", "settings.exportOptimize")]
    [InlineData("""{ "exportPrecision": "bf16" }""", "settings.exportPrecision")]
    [InlineData("""{ "exportStepCache": 2 }""", "settings.exportStepCache")]
    [InlineData("""{ "exportStepCache": "yes" }""", "settings.exportStepCache")]
    public void ErrorsNameFileAndField(string json, string field)
    {
        var ex = Assert.Throws<PluginSettingsException>(() => Parse(json, Path.GetTempPath()));
        Assert.Contains("/cfg/plugins.json", ex.Message);
        Assert.Contains(field, ex.Message);
    }

    [Fact]
    public void RefusesModelsFolderThroughSymlink()
    {
        string root = TestPaths.NewTempDir();
        string outside = TestPaths.NewTempDir();
        Directory.CreateSymbolicLink(Path.Combine(root, "models"), outside);
        var ex = Assert.Throws<PluginSettingsException>(() => Parse("""{ "modelsFolder": "models" }""", root));
        Assert.Contains("outside the folder", ex.Message);
        Directory.Delete(root, true);
        Directory.Delete(outside, true);
    }
}

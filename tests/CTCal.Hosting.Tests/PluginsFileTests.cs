using CTCal.Hosting;
using CTCal.Tests;
using Xunit;

namespace CTCal.Hosting.Tests;

public sealed class PluginsFileTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-pluginsjson");

    public void Dispose() => Directory.Delete(_root, true);

    private string Write(string json)
    {
        string path = Path.Combine(_root, "plugins.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void ReadsAValidFile()
    {
        string file = Write("""
            { "version": 1, "plugins": [
              { "id": "ctcal.onnx", "path": "plugins/CTCal.Plugin", "assembly": "CTCal.Plugin.dll", "enabled": true,
                "settings": { "modelsFolder": "models" } },
              { "id": "other", "path": "plugins/other", "assembly": "Other.dll", "enabled": false } ] }
            """);
        var parsed = PluginsFile.Load(file);
        Assert.Equal(2, parsed.Plugins.Count);
        Assert.Equal(Path.Combine(_root, "plugins", "CTCal.Plugin", "CTCal.Plugin.dll"), parsed.Plugins[0].AssemblyPath);
        Assert.Equal("models", parsed.Plugins[0].Settings.GetProperty("modelsFolder").GetString());
        Assert.False(parsed.Plugins[1].Enabled);
        Assert.Equal(System.Text.Json.JsonValueKind.Object, parsed.Plugins[1].Settings.ValueKind);
    }

    [Theory]
    [InlineData("""{ "plugins": [] }""", "version")]
    [InlineData("""{ "version": 2, "plugins": [] }""", "version")]
    [InlineData("""{ "version": 1 }""", "plugins")]
    [InlineData("""{ "version": 1, "plugins": [ 3 ] }""", "plugins[0]")]
    [InlineData("""{ "version": 1, "plugins": [ { "path": "p", "assembly": "a.dll" } ] }""", "plugins[0].id")]
    [InlineData("""{ "version": 1, "plugins": [ { "id": "a", "path": 5, "assembly": "a.dll" } ] }""", "plugins[0].path")]
    [InlineData("""{ "version": 1, "plugins": [ { "id": "a", "path": "p", "assembly": "a.exe" } ] }""", "plugins[0].assembly")]
    [InlineData("""{ "version": 1, "plugins": [ { "id": "a", "path": "p", "assembly": "a.dll", "enabled": "yes" } ] }""", "plugins[0].enabled")]
    [InlineData("""{ "version": 1, "plugins": [ { "id": "a", "path": "p", "assembly": "a.dll", "settings": [] } ] }""", "plugins[0].settings")]
    [InlineData("""{ "version": 1, "plugins": [ { "id": "a", "path": "p", "assembly": "a.dll", "colour": 1 } ] }""", "plugins[0].colour")]
    [InlineData("""{ "version": 1, "plugins": [ { "id": "a", "path": "p", "assembly": "a.dll" }, { "id": "A", "path": "q", "assembly": "a.dll" } ] }""", "plugins[1].id")]
    [InlineData("""{ "version": 1, "plugins": [ { "id": "bad id!", "path": "p", "assembly": "a.dll" } ] }""", "plugins[0].id")]
    public void ErrorsNameTheFileAndTheField(string json, string field)
    {
        string file = Write(json);
        var ex = Assert.Throws<PluginsFileException>(() => PluginsFile.Load(file));
        Assert.StartsWith($"{file}: {field}: ", ex.Message);
        Assert.Equal(field, ex.Field);
    }

    [Fact]
    public void InvalidJsonNamesTheFileAndLine()
    {
        string file = Write("{\n \"version\": 1,\n \"plugins\": [ oops ]\n}");
        var ex = Assert.Throws<PluginsFileException>(() => PluginsFile.Load(file));
        Assert.Contains(file, ex.Message);
        Assert.Contains("line 3", ex.Message);
    }

    [Theory]
    [InlineData("../elsewhere")]
    [InlineData("plugins/../../elsewhere")]
    [InlineData("/usr/lib")]
    public void PathsMayNotEscapeTheFolder(string path)
    {
        string file = Write($$"""{ "version": 1, "plugins": [ { "id": "a", "path": "{{path}}", "assembly": "a.dll" } ] }""");
        var ex = Assert.Throws<PluginsFileException>(() => PluginsFile.Load(file));
        Assert.Equal("plugins[0].path", ex.Field);
    }

    [Fact]
    public void SymbolicLinksAreRefused()
    {
        string outside = TestPaths.NewTempDir("ctcal-outside");
        try
        {
            Directory.CreateDirectory(Path.Combine(_root, "plugins"));
            Directory.CreateSymbolicLink(Path.Combine(_root, "plugins", "linked"), outside);
            string file = Write("""{ "version": 1, "plugins": [ { "id": "a", "path": "plugins/linked", "assembly": "a.dll" } ] }""");
            var ex = Assert.Throws<PluginsFileException>(() => PluginsFile.Load(file));
            Assert.Equal("plugins[0].path", ex.Field);
            Assert.Contains("outside the folder", ex.Message);
        }
        finally
        {
            Directory.Delete(outside, true);
        }
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        string file = Path.Combine(_root, "none.json");
        var ex = Assert.Throws<PluginsFileException>(() => PluginsFile.Load(file));
        Assert.Contains(file, ex.Message);
    }
}

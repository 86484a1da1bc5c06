using System.CommandLine;
using CTCal.Host.Cli;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

public sealed class CliTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-cli");

    public void Dispose() => Directory.Delete(_root, true);

    private (int Code, string Output) Run(params string[] args)
    {
        var output = new StringWriter();
        var log = new RecordingLog();
        var root = HostCommands.Build(output, log, _ => log);
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = output });
        return (code, output.ToString());
    }

    [Theory]
    [InlineData("plugins")]
    [InlineData("models")]
    [InlineData("generate")]
    [InlineData("export")]
    [InlineData("finetune")]
    [InlineData("bench")]
    public void EveryVerbHasHelp(string verb)
    {
        var (code, output) = Run(verb, "--help");
        Assert.Equal(0, code);
        Assert.Contains(verb, output);
        Assert.Contains("--config", output);
    }

    [Fact]
    public void PluginsModelsAndGenerateWork()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        string config = PluginFolders.WritePluginsJson(
            _root,
            PluginFolders.Entry("ctcal.onnx", "onnx"),
            PluginFolders.Entry("broken", "nothing-here"));

        var (code, output) = Run("plugins", "--config", config);
        Assert.Equal(0, code);
        Assert.Contains("ctcal.onnx.generator", output);
        Assert.Contains("warning: plugin broken", output);

        (code, output) = Run("models", "--config", config, "--plugin", "ctcal.onnx");
        Assert.Equal(0, code);
        Assert.Contains("tiny", output);

        string outDir = Path.Combine(_root, "out");
        (code, output) = Run("generate", "--config", config, "-m", "tiny", "--prompt", "a cube", "--width", "64", "--height", "32",
            "--steps", "2", "--seed", "5", "-n", "2", "-o", outDir);
        Assert.True(code == 0, output);
        Assert.Contains("provider CPU", output);
        Assert.True(File.Exists(Path.Combine(outDir, "tiny-5.png")));
        Assert.True(File.Exists(Path.Combine(outDir, "tiny-6.png")));
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp"));
    }

    [Fact]
    public void ExportVerbRegistersTheModel()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        string config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));
        var (code, output) = Run("export", "--config", config, "--checkpoint", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--id", "tiny-sd1");
        Assert.True(code == 0, output);
        Assert.Contains("exported tiny-sd1", output);
        Assert.DoesNotContain("warning", output);

        (code, output) = Run("models", "--config", config);
        Assert.Equal(0, code);
        Assert.Contains("tiny-sd1  sd1 128x128", output);

        (code, output) = Run("export", "--config", config, "--checkpoint", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--id", "tiny-sd1");
        Assert.Equal(2, code);
        Assert.Contains("already exists", output);
    }

    [Fact]
    public void BadInputIsReportedWithFileAndField()
    {
        string config = Path.Combine(_root, "plugins.json");
        File.WriteAllText(config, """{ "version": 1, "plugins": [ { "id": "x", "path": "../up", "assembly": "x.dll" } ] }""");
        var (code, output) = Run("plugins", "--config", config);
        Assert.Equal(2, code);
        Assert.Contains($"{config}: plugins[0].path", output);

        PluginFolders.CopyPlugin(_root, "onnx");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));
        (code, output) = Run("generate", "--config", config, "-m", "tiny", "--prompt", "x", "--width", "63");
        Assert.Equal(2, code);
        Assert.Contains("Width", output);
    }
}

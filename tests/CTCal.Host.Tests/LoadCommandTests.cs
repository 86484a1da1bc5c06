using System.CommandLine;
using CTCal.Host.Cli;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>Process-wide resource figures are only meaningful with no other test running in the same process.</summary>
[CollectionDefinition(nameof(LoadCommandTests), DisableParallelization = true)]
public sealed class LoadCommandCollection;

/// <summary><c>ctcal-host load</c> on the exported tiny fixture with tiny counts: the figures are printed and it passes.</summary>
[Collection(nameof(LoadCommandTests))]
public sealed class LoadCommandTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-load");

    public void Dispose() => Directory.Delete(_root, true);

    private static (int Code, string Output) Run(params string[] args)
    {
        var output = new StringWriter();
        var log = new RecordingLog();
        var root = HostCommands.Build(output, log, _ => log);
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = output });
        return (code, output.ToString());
    }

    [Fact]
    public void LoadVerbReportsResourcesAtEachPointAndAVerdict()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        string config = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));
        var (code, output) = Run("export", "--config", config, "--checkpoint", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--id", "tiny-sd1");
        Assert.True(code == 0, output);

        (code, output) = Run("load", "--config", config, "-m", "tiny-sd1", "--sequential", "3", "--concurrent", "2", "--warmup", "1");
        // The memory verdict is the benchmark's business (figures in docs/hardening.md), not a unit test's: a few images
        // say nothing about growth, so only the verdict's form and its agreement with the exit code are checked here.
        Assert.True(code is 0 or 4, output);
        Assert.Contains("model tiny-sd1, 32x32, 2 steps", output);
        Assert.Matches(@"after warm-up \(1 sequential \+ 2 concurrent\): VmRSS \d+\.\d MiB \(managed heap \d+\.\d MiB\), handles \d+, threads \d+", output);
        Assert.Matches(@"after 3 sequential: VmRSS \d+\.\d MiB \(managed heap \d+\.\d MiB\), handles \d+, threads \d+, RSS growth [+-]?\d+\.\d%", output);
        Assert.Matches(@"end, after 2 concurrent.*: VmRSS \d+\.\d MiB \(managed heap \d+\.\d MiB\), handles \d+, threads \d+, RSS growth [+-]?\d+\.\d%", output);
        Assert.Matches(@"throughput: sequential \d+\.\d images/s, concurrent x2 \d+\.\d images/s", output);
        Assert.Contains(code == 0 ? "PASS: RSS growth" : "FAIL: RSS growth", output);

        (code, output) = Run("load", "--config", config, "-m", "no-such-model", "--sequential", "1", "--concurrent", "1");
        Assert.Equal(2, code);
        Assert.Contains("no loaded plugin has a model 'no-such-model'", output);

        (code, output) = Run("load", "--config", Path.Combine(_root, "missing.json"), "-m", "tiny-sd1");
        Assert.Equal(2, code);
        Assert.Contains("missing.json", output);
    }
}

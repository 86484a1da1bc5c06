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

        (code, output) = Run("load", "--config", config, "-m", "tiny-sd1", "--sequential", "3", "--concurrent", "2", "--warmup", "1", "--warmup-rounds", "2");
        // The memory verdict is the benchmark's business (figures in docs/hardening.md), not a unit test's: a few images
        // say nothing about growth, so only the verdict's form and its agreement with the exit code are checked here.
        Assert.True(code is 0 or 4, output);
        Assert.Contains("model tiny-sd1, 32x32, 2 steps", output);
        // Two rounds of a few images rarely reach the GC's gen0 budget; either way the warm-up stops at --warmup-rounds.
        Assert.Matches(@"warm-up round 1: JIT \+\d+ methods, \d+ gen0 GCs so far, \d+\.\d MiB allocated so far, VmRSS \d+\.\d MiB \(no GC forced\)", output);
        Assert.Matches(@"warm-up round 2: .*\n", output);
        Assert.DoesNotMatch(@"warm-up round 3", output);
        const string Figures = @"VmRSS \d+\.\d MiB \((anon \d+\.\d, file \d+\.\d; )?managed heap \d+\.\d MiB live, \d+\.\d MiB committed; JIT \d+ methods\), handles \d+, threads \d+";
        Assert.Matches(@"after warm-up \(1 sequential \+ 2 concurrent per round, (NOT )?steady after 2 rounds, 7 images\): " + Figures, output);
        Assert.Matches(@"after 3 sequential: " + Figures + @", RSS growth [+-]?\d+\.\d%; allocated \d+\.\d MiB managed \(\d+ KiB/image\), \d+ gen0 GCs", output);
        Assert.Matches(@"end, after 2 concurrent.*: " + Figures + @", RSS growth [+-]?\d+\.\d%; allocated \d+\.\d MiB managed \(\d+ KiB/image\), \d+ gen0 GCs", output);
        Assert.Matches(@"throughput: sequential \d+\.\d images/s, concurrent x2 \d+\.\d images/s", output);
        Assert.Contains(code == 0 ? "PASS: RSS growth" : "FAIL: RSS growth", output);
        Assert.DoesNotContain(code == 0 ? "FAIL: RSS growth" : "PASS: RSS growth", output);

        (code, output) = Run("load", "--config", config, "-m", "no-such-model", "--sequential", "1", "--concurrent", "1");
        Assert.Equal(2, code);
        Assert.Contains("no loaded plugin has a model 'no-such-model'", output);

        (code, output) = Run("load", "--config", Path.Combine(_root, "missing.json"), "-m", "tiny-sd1");
        Assert.Equal(2, code);
        Assert.Contains("missing.json", output);
    }

    private const long MiB = 1024 * 1024;

    /// <summary>The verdict on made-up readings: each limit on both sides of its threshold, and what the line says.</summary>
    [Theory]
    [InlineData(100, 109, 0, 0, true)]      // +9% RSS
    [InlineData(100, 95, 0, 0, true)]       // shrinking is fine
    [InlineData(100, 110, 0, 0, false)]     // +10% is the limit itself: fails
    [InlineData(100, 140, 0, 0, false)]
    [InlineData(100, 100, 16, 0, true)]     // +16 handles allowed
    [InlineData(100, 100, 17, 0, false)]
    [InlineData(100, 100, 0, 4, true)]      // +4 threads allowed
    [InlineData(100, 100, 0, 5, false)]
    public void VerdictAppliesEachLimit(int warmMib, int endMib, int extraHandles, int extraThreads, bool pass)
    {
        var warm = new LoadCommand.Reading(warmMib * MiB, 124, 17);
        var end = new LoadCommand.Reading(endMib * MiB, 124 + extraHandles, 17 + extraThreads);
        var (passed, line) = LoadCommand.Judge(warm, end);
        Assert.Equal(pass, passed);
        Assert.StartsWith(pass ? "PASS: " : "FAIL: ", line);
        double growth = (endMib - warmMib) * 100.0 / warmMib;
        Assert.Contains($"RSS growth {growth.ToString("+0.0;-0.0;0.0", System.Globalization.CultureInfo.InvariantCulture)}% (limit 10%)", line);
        Assert.Contains($"handles {(extraHandles == 0 ? "0" : "+" + extraHandles)} (limit +16)", line);
        Assert.Contains($"threads {(extraThreads == 0 ? "0" : "+" + extraThreads)} (limit +4)", line);
    }
}

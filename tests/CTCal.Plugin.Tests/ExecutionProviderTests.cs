using CTCal.Contracts;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Microsoft.ML.OnnxRuntime;
using Xunit;

namespace CTCal.Plugin.Tests;

public class ExecutionProviderTests
{
    private readonly Xunit.Abstractions.ITestOutputHelper _output;

    public ExecutionProviderTests(Xunit.Abstractions.ITestOutputHelper output) => _output = output;

    private static readonly SessionTuning Tuning = new(1, 1, LowMemory: false);

    [Fact]
    public void GpuProvidersMissingFromThisBuildFallBackToCpuWithWarnings()
    {
        // The CPU package's managed API has AppendExecutionProvider_DML/_CUDA; the native library lacks the providers,
        // so the real calls throw and the selector must move on.
        var log = new RecordingLog();
        var (options, used, warnings) = ExecutionProviderSelector.Create(
            new[] { ExecutionProviderKind.DirectML, ExecutionProviderKind.Cuda, ExecutionProviderKind.Cpu }, Tuning, log);
        using (options)
        {
            Assert.Equal(ExecutionProviderKind.Cpu, used);
            Assert.Equal(2, warnings.Count);
            Assert.Contains("DirectML", warnings[0]);
            Assert.Contains("CUDA", warnings[1]);
            Assert.Equal(2, log.Warnings.Count());
        }
    }

    [Fact]
    public void RealAppendThrowsForAbsentNativeProviders()
    {
        foreach (var kind in new[] { ExecutionProviderKind.DirectML, ExecutionProviderKind.Cuda })
        {
            using var options = new SessionOptions();
            var ex = Record.Exception(() => ExecutionProviderSelector.AppendProvider(options, kind));
            Assert.NotNull(ex);
            _output.WriteLine($"{kind}: {ex!.GetType().FullName}: {ex.Message}");
        }
    }

    [Fact]
    public void CpuIsAppendedEvenWhenNotListed()
    {
        var log = new RecordingLog();
        var (options, used, warnings) = ExecutionProviderSelector.Create(
            new[] { ExecutionProviderKind.Cuda }, Tuning, log,
            (_, kind) => { if (kind != ExecutionProviderKind.Cpu) throw new InvalidOperationException("no device"); });
        using (options)
        {
            Assert.Equal(ExecutionProviderKind.Cpu, used);
            Assert.Single(warnings);
        }
    }

    [Fact]
    public void FirstWorkingProviderWinsAndDirectMlGetsSequentialOptions()
    {
        var log = new RecordingLog();
        var seen = new List<ExecutionProviderKind>();
        var (options, used, warnings) = ExecutionProviderSelector.Create(
            new[] { ExecutionProviderKind.DirectML, ExecutionProviderKind.Cpu }, Tuning, log,
            (o, kind) =>
            {
                seen.Add(kind);
                Assert.False(o.EnableMemoryPattern);
                Assert.Equal(ExecutionMode.ORT_SEQUENTIAL, o.ExecutionMode);
            });
        using (options)
        {
            Assert.Equal(ExecutionProviderKind.DirectML, used);
            Assert.Empty(warnings);
            Assert.Equal(new[] { ExecutionProviderKind.DirectML }, seen);
        }
    }

    /// <summary>
    /// Memory-pattern planning is off in both memory modes (with the arena it made the second image allocate a second copy
    /// of the activations); the arena is what the modes differ in.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NeitherMemoryModePlansMemoryPatternsAndOnlyLowTurnsTheArenaOff(bool low)
    {
        var (options, used, _) = ExecutionProviderSelector.Create(
            new[] { ExecutionProviderKind.Cpu }, Tuning with { LowMemory = low }, new RecordingLog(), (_, _) => { });
        using (options)
        {
            Assert.Equal(ExecutionProviderKind.Cpu, used);
            Assert.False(options.EnableMemoryPattern);
            Assert.Equal(!low, options.EnableCpuMemArena);
        }
    }

    /// <summary>
    /// Low memory mode is also the mode for hosts that share the machine: its worker threads sleep instead of spinning
    /// between operators; balanced keeps ONNX Runtime's spinning. A session takes both settings (the tiny model runs).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OnlyLowMemoryModeTurnsThreadSpinningOff(bool low)
    {
        var tuning = Tuning with { LowMemory = low };
        var policy = SessionPolicy.For(tuning);
        Assert.Equal(!low, policy.Spinning);
        Assert.Equal(!low, policy.CpuArena);
        Assert.False(policy.MemoryPattern);

        string root = TestPaths.NewTempDir();
        try
        {
            string model = TinySdModel.Create(root, "tiny");
            var (options, _, _) = ExecutionProviderSelector.Create(new[] { ExecutionProviderKind.Cpu }, tuning, new RecordingLog(), (_, _) => { });
            using (options)
            using (var session = new InferenceSession(Path.Combine(model, "vae_decoder", "model.onnx"), options))
            {
                Assert.NotEmpty(session.InputNames);
            }
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void PlatformDefaultsEndWithCpu()
    {
        var defaults = ExecutionProviderSelector.PlatformDefault();
        Assert.Equal(ExecutionProviderKind.Cpu, defaults[^1]);
        Assert.Contains(ExecutionProviderKind.Cuda, defaults);
        Assert.Equal(OperatingSystem.IsWindows(), defaults.Contains(ExecutionProviderKind.DirectML));
    }
}

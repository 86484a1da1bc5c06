using CTCal.Contracts;
using CTCal.Export;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Plugin.Tests;

/// <summary>
/// <c>memoryLimitMiB</c>: ONNX Runtime's CPU memory capped by a shared arena, so a request too large for it fails the
/// same way on every run, as <see cref="GenerationOutOfMemoryException"/> naming the request and what to lower, and the
/// model keeps serving normal requests. Runs on the exporter's tiny-sd1 (real UNet with attention at full latent size).
/// </summary>
public sealed class MemoryLimitTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-memlimit");
    private readonly List<PluginRuntime> _runtimes = [];

    public void Dispose()
    {
        foreach (var runtime in _runtimes)
        {
            runtime.Dispose();
        }

        Directory.Delete(_root, true);
    }

    private string Models => Path.Combine(_root, "models");

    private (OnnxImageGenerator Generator, PluginRuntime Runtime, RecordingLog Log) Create(int? memoryLimitMiB, MemoryMode mode = MemoryMode.Balanced)
    {
        var log = new RecordingLog();
        var runtime = new PluginRuntime(
            new PluginSettings
            {
                ModelsFolder = Models, ExecutionProviders = [ExecutionProviderKind.Cpu], IntraOpThreads = 1, InterOpThreads = 1,
                MemoryMode = mode, MemoryLimitMiB = memoryLimitMiB,
            },
            log);
        _runtimes.Add(runtime);
        return (new OnnxImageGenerator(runtime), runtime, log);
    }

    private void ExportTinySd1() =>
        OnnxExporter.Export(new ExportOptions { ModelFolder = Path.Combine(TestPaths.Fixtures, "tiny-sd1"), OutputFolder = Path.Combine(Models, "tiny-sd1") });

    private static GenerationRequest Request(int side) => new()
    {
        Model = "tiny-sd1", Prompt = "a red cube", Width = side, Height = side, Steps = 2, Seed = 11, Scheduler = "euler_a",
    };

    /// <summary>
    /// At 64x64 the first attention layer of tiny-sd1 needs one 32 MiB buffer (its 1024 x 1024 scores for all heads and
    /// both guidance halves), which cannot fit under a 32 MiB cap next to anything else; 32x32 needs under 8 MiB in all.
    /// </summary>
    [Fact]
    public async Task ARequestOverTheMemoryLimitFailsNamingItAndTheModelKeepsServing()
    {
        ExportTinySd1();
        var (unlimited, _, _) = Create(memoryLimitMiB: null);
        byte[] reference = (await unlimited.GenerateAsync(Request(32))).Images[0].Png;
        Assert.NotEmpty((await unlimited.GenerateAsync(Request(64))).Images[0].Png); // fits without the cap

        var (generator, runtime, log) = Create(memoryLimitMiB: 32);
        for (int round = 0; round < 2; round++)
        {
            var ex = await Assert.ThrowsAsync<GenerationOutOfMemoryException>(() => generator.GenerateAsync(Request(64) with { BatchCount = 3 }));
            output.WriteLine(ex.Message);
            Assert.StartsWith("Not enough memory to generate 64x64 with model 'tiny-sd1' on CPU (3 image(s)", ex.Message);
            Assert.Contains("UNet batch 2", ex.Message);
            Assert.Contains("memoryLimitMiB 32", ex.Message);
            Assert.Contains("ONNX Runtime could not allocate a buffer of", ex.Message);
            Assert.Contains("lower Width and Height", ex.Message);
            Assert.Contains("memoryMode \"low\"", ex.Message);
            Assert.Contains("raise memoryLimitMiB", ex.Message);
            Assert.DoesNotContain("onnxruntime_src", ex.Message);
            Assert.Equal((64, 64, 3), (ex.Parameters.Width, ex.Parameters.Height, ex.Parameters.BatchCount));
            Assert.IsType<OnnxRuntimeException>(ex.InnerException);

            // The same generator and the same loaded sessions serve the next, normal request, with the same image.
            Assert.True(runtime.IsLoaded("tiny-sd1"));
            Assert.Equal(reference, (await generator.GenerateAsync(Request(32))).Images[0].Png);
        }

        Assert.Single(log.Entries, e => e.Message.StartsWith("Loading model tiny-sd1", StringComparison.Ordinal));
        Assert.Equal(2, log.Entries.Count(e => e.Severity == LogSeverity.Warning && e.Message.StartsWith("Not enough memory", StringComparison.Ordinal)));

        // Another plugin instance with a larger cap replaces the process's arena for the sessions it creates: 64x64 fits
        // there, while the sessions loaded under the 32 MiB cap keep theirs.
        var (larger, _, _) = Create(memoryLimitMiB: 256);
        Assert.NotEmpty((await larger.GenerateAsync(Request(64))).Images[0].Png);
        Assert.Equal(256L << 20, CpuMemoryLimit.RegisteredBytes);
        await Assert.ThrowsAsync<GenerationOutOfMemoryException>(() => generator.GenerateAsync(Request(64)));
    }
}

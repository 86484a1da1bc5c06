using System.Text.Json;
using CTCal.Contracts;
using CTCal.Export;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Imaging;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// Step caching through the plugin on the exporter's tiny-sd1 (a real UNet): <c>stepCache</c> 1 gives the pixels of a
/// model exported without the step-cache graphs; N > 1 runs shallow steps; bad intervals and models without the graphs
/// are refused (request) or run uncached with a warning (setting).
/// </summary>
public sealed class StepCacheTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-stepcache");
    private readonly List<PluginRuntime> _runtimes = [];

    public StepCacheTests()
    {
        string fixture = Path.Combine(TestPaths.Fixtures, "tiny-sd1");
        OnnxExporter.Export(new ExportOptions { ModelFolder = fixture, OutputFolder = Path.Combine(Models, "plain") });
        OnnxExporter.Export(new ExportOptions { ModelFolder = fixture, OutputFolder = Path.Combine(Models, "cached"), StepCacheBranch = 1 });
    }

    public void Dispose()
    {
        foreach (var runtime in _runtimes)
        {
            runtime.Dispose();
        }

        Directory.Delete(_root, true);
    }

    private string Models => Path.Combine(_root, "models");

    private OnnxImageGenerator Create(int stepCache = 1, MemoryMode mode = MemoryMode.Balanced, bool ioBinding = true)
    {
        var runtime = new PluginRuntime(
            new PluginSettings
            {
                ModelsFolder = Models, ExecutionProviders = [ExecutionProviderKind.Cpu], IntraOpThreads = 1, InterOpThreads = 1, MemoryMode = mode, StepCache = stepCache,
                IoBinding = ioBinding,
            },
            new RecordingLog());
        _runtimes.Add(runtime);
        return new OnnxImageGenerator(runtime);
    }

    private static GenerationRequest Request(string model) => new()
    {
        Model = model, Prompt = "a red cube", Width = 32, Height = 32, Steps = 6, Seed = 5, Scheduler = "ddim", GuidanceScale = 5,
    };

    private static byte[] Pixels(GenerationResult result) => PngDecoder.Decode(Assert.Single(result.Images).Png).Rgb;

    /// <param name="lowMemory">memoryMode low: the guidance halves as two UNet calls of batch 1 (two cached features).</param>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Step_cache_1_gives_the_same_pixels_as_a_model_exported_without_the_cache_graphs(bool lowMemory)
    {
        var mode = lowMemory ? MemoryMode.Low : MemoryMode.Balanced;
        var generator = Create(mode: mode);
        byte[] uncached = Pixels(await generator.GenerateAsync(Request("plain")));
        Assert.Equal(uncached, Pixels(await generator.GenerateAsync(Request("cached"))));
        var one = await generator.GenerateAsync(Request("cached?stepCache=1"));
        Assert.Equal(uncached, Pixels(one));
        Assert.Equal("cached?stepCache=1", one.Parameters.Model);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Step_cache_2_runs_shallow_steps_and_the_png_records_the_interval(bool lowMemory)
    {
        var mode = lowMemory ? MemoryMode.Low : MemoryMode.Balanced;
        var generator = Create(mode: mode);
        byte[] full = Pixels(await generator.GenerateAsync(Request("cached")));
        var two = await generator.GenerateAsync(Request("cached?stepCache=2"));
        byte[] cached = Pixels(two);
        Assert.NotEqual(full, cached);
        Assert.Equal("cached?stepCache=2", two.Parameters.Model);
        string text = System.Text.Encoding.Latin1.GetString(two.Images[0].Png);
        Assert.Contains("step_cache\u00002", text, StringComparison.Ordinal);

        // the plugin's setting does the same without the request naming it
        Assert.Equal(cached, Pixels(await Create(stepCache: 2, mode: mode).GenerateAsync(Request("cached"))));
        // and the request overrides the setting
        Assert.Equal(full, Pixels(await Create(stepCache: 2, mode: mode).GenerateAsync(Request("cached?stepCache=1"))));
    }

    /// <summary>
    /// The bound denoiser with the shallow graph bound beside the full one (the feature tensor shared between them) makes
    /// the PNGs of the per-call path, byte for byte: batched guidance (one batch-2 feature) and memory mode low (one per
    /// half), without guidance, several images per request (each image's first step full again), and float16 compute.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Bound_step_caching_gives_bitwise_the_pngs_of_the_per_call_path(bool lowMemory)
    {
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = Path.Combine(TestPaths.Fixtures, "tiny-sd1"), OutputFolder = Path.Combine(Models, "cached16"), StepCacheBranch = 2, Precision = ExportPrecision.Fp16,
        });
        var mode = lowMemory ? MemoryMode.Low : MemoryMode.Balanced;
        var bound = Create(mode: mode);
        var perCall = Create(mode: mode, ioBinding: false);
        foreach (var request in new[]
        {
            Request("cached?stepCache=2") with { BatchCount = 2 },
            Request("cached?stepCache=3") with { GuidanceScale = 1.0 },
            Request("cached16?stepCache=2"),
        })
        {
            var expected = await perCall.GenerateAsync(request);
            var actual = await bound.GenerateAsync(request);
            Assert.Equal(request.BatchCount, actual.Images.Count);
            for (int i = 0; i < expected.Images.Count; i++)
            {
                Assert.Equal(expected.Images[i].Png, actual.Images[i].Png);
            }
        }
    }

    [Theory]
    [InlineData("plain?stepCache=2", "Model 'plain' was exported without the step-cache graphs (unet_shallow/model.onnx")]
    [InlineData("plain?stepCache=2", "export it again with 'ctcal-export export --step-cache-branch 1'")]
    [InlineData("cached?stepCache=0", "Model 'cached?stepCache=0': stepCache must be a whole number of steps from 1 (no caching) to 100, got '0'")]
    [InlineData("cached?stepCache=two", "stepCache must be a whole number of steps from 1 (no caching) to 100, got 'two'")]
    [InlineData("cached?steps=2", "Model 'cached?steps=2': unknown option 'steps' after '?' (known: stepCache=N)")]
    public async Task Bad_step_cache_requests_are_refused_saying_why(string model, string message)
    {
        var e = await Assert.ThrowsAnyAsync<ArgumentException>(() => Create().GenerateAsync(Request(model)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_setting_on_a_model_without_the_graphs_runs_uncached_with_a_warning()
    {
        byte[] uncached = Pixels(await Create().GenerateAsync(Request("plain")));
        var result = await Create(stepCache: 3).GenerateAsync(Request("plain"));
        Assert.Equal(uncached, Pixels(result));
        Assert.Contains(result.Warnings, w => w.Contains("without the step-cache graphs", StringComparison.Ordinal) && w.Contains("stepCache setting (3)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("101")]
    [InlineData("1.5")]
    [InlineData("\"2\"")]
    public void A_bad_step_cache_setting_is_refused_naming_the_field(string value)
    {
        using var doc = JsonDocument.Parse($$"""{"stepCache": {{value}}}""");
        var e = Assert.Throws<PluginSettingsException>(() => PluginSettings.Parse(doc.RootElement, _root, "/srv/plugins.json"));
        Assert.StartsWith("/srv/plugins.json: settings.stepCache: expected a whole number of steps from 1 (no caching) to 100", e.Message);
    }
}

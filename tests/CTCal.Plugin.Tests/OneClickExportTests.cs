using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Export;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.ModelExport;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// What the one-click export (<see cref="OnnxModelExporter"/>) writes: its request has no graph options, so the plugin's
/// settings (exportOptimize, exportPrecision, exportStepCache, stepCache) decide, through <see cref="ExportChoice"/>.
/// </summary>
public sealed class OneClickExportTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-oneclick");
    private readonly List<PluginRuntime> _runtimes = [];

    private static string TinySd1 => Path.Combine(TestPaths.Fixtures, "tiny-sd1");

    public void Dispose()
    {
        foreach (var runtime in _runtimes)
        {
            runtime.Dispose();
        }

        Directory.Delete(_root, true);
    }

    private string Models => Path.Combine(_root, "models");

    private (OnnxModelExporter Exporter, OnnxImageGenerator Generator, RecordingLog Log) Create(PluginSettings settings)
    {
        var log = new RecordingLog();
        var runtime = new PluginRuntime(settings with { ModelsFolder = Models, IntraOpThreads = 1, InterOpThreads = 1 }, log);
        _runtimes.Add(runtime);
        return (new OnnxModelExporter(runtime), new OnnxImageGenerator(runtime), log);
    }

    private static PluginSettings Cpu => new() { ModelsFolder = "", ExecutionProviders = [ExecutionProviderKind.Cpu] };

    private OnnxModelManifest Manifest(string id) => OnnxModelManifest.TryRead(Path.Combine(Models, id)) ?? throw new InvalidOperationException($"no manifest for {id}");

    private static GenerationRequest Request(string model) => new()
    {
        Model = model, Prompt = "a red cube", Width = 32, Height = 32, Steps = 4, Seed = 5, Scheduler = "ddim", GuidanceScale = 5,
    };

    [Fact]
    public async Task Auto_on_the_cpu_provider_writes_the_cpu_profile_in_fp32_without_step_cache_graphs()
    {
        var (exporter, generator, log) = Create(Cpu);
        await exporter.ExportAsync(new ModelExportRequest(TinySd1, "auto"));
        var manifest = Manifest("auto");
        Assert.Equal("cpu", manifest.Optimize);
        Assert.Equal("fp32", manifest.Precision);
        Assert.Null(manifest.StepCache);
        Assert.Contains(log.Entries, e => e.Message.Contains("profile cpu (auto for the CPU provider), precision fp32, step-cache graphs none (stepCache 1)", StringComparison.Ordinal));
        Assert.Single((await generator.GenerateAsync(Request("auto"))).Images);
    }

    [Fact]
    public async Task The_provider_is_found_once_per_plugin_so_a_missing_one_is_reported_once()
    {
        // CUDA is not in this build (the CPU package), so appending it fails with a warning, then CPU is used.
        var (exporter, _, log) = Create(Cpu with { ExecutionProviders = [ExecutionProviderKind.Cuda, ExecutionProviderKind.Cpu] });
        await exporter.ExportAsync(new ModelExportRequest(TinySd1, "first"));
        await exporter.ExportAsync(new ModelExportRequest(TinySd1, "second"));
        Assert.Equal("cpu", Manifest("second").Optimize);
        Assert.Single(log.Warnings, w => w.StartsWith("Execution provider CUDA is not available", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Named_settings_choose_profile_precision_and_step_cache_graphs()
    {
        var (exporter, generator, _) = Create(Cpu with
        {
            ExportOptimize = ExportOptimization.Plain, ExportPrecision = ExportPrecision.Fp16Weights, ExportStepCache = true,
        });
        await exporter.ExportAsync(new ModelExportRequest(TinySd1, "named"));
        var manifest = Manifest("named");
        Assert.Equal("plain", manifest.Optimize);
        Assert.Equal("fp16-weights", manifest.Precision);
        Assert.Equal(ExportChoice.Branch, manifest.StepCache?.Branch);
        Assert.True(File.Exists(Path.Combine(Models, "named", ManifestStepCache.ShallowFolder, "model.onnx")));
        // The graphs are there, so a request may ask for caching without the "exported without the step-cache graphs" warning.
        var result = await generator.GenerateAsync(Request(RequestModelId.WithStepCache("named", 2)));
        Assert.DoesNotContain(result.Warnings, w => w.Contains("step-cache graphs", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(2, null, true)]
    [InlineData(2, false, false)]
    [InlineData(1, null, false)]
    [InlineData(1, true, true)]
    public async Task Step_cache_graphs_follow_stepCache_unless_exportStepCache_says_otherwise(int stepCache, bool? exportStepCache, bool expected)
    {
        var (exporter, _, _) = Create(Cpu with { StepCache = stepCache, ExportStepCache = exportStepCache });
        await exporter.ExportAsync(new ModelExportRequest(TinySd1, "m"));
        Assert.Equal(expected, Manifest("m").StepCache is not null);
        Assert.Equal(expected, File.Exists(Path.Combine(Models, "m", ManifestStepCache.ShallowFolder, "model.onnx")));
    }

    [Fact]
    public async Task An_SD3_model_is_exported_without_step_cache_graphs_even_when_they_are_asked_for()
    {
        string sd3 = TinySd3Folder.Write(Path.Combine(_root, "sd3-source"), seed: 3);
        var (exporter, generator, log) = Create(Cpu with { StepCache = 2, ExportStepCache = true });
        await exporter.ExportAsync(new ModelExportRequest(sd3, "sd3"));
        Assert.Null(Manifest("sd3").StepCache);
        Assert.Equal(ModelFamily.Sd3, Manifest("sd3").Family);
        Assert.Equal("cpu", Manifest("sd3").Optimize); // its transformer with MultiHeadAttention and FastGelu
        Assert.Contains(log.Entries, e => e.Message.Contains("step-cache graphs none (SD3 has no UNet)", StringComparison.Ordinal));
        var result = await generator.GenerateAsync(new GenerationRequest { Model = "sd3", Prompt = "a red cube", Width = 16, Height = 16, Steps = 2, Seed = 1 });
        Assert.Single(result.Images);
    }

    [Fact]
    public void Auto_picks_by_the_provider_the_sessions_run_on()
    {
        foreach (var (provider, expected) in new[]
                 {
                     (ExecutionProviderKind.Cpu, ExportOptimization.Cpu), (ExecutionProviderKind.Cuda, ExportOptimization.Plain),
                     (ExecutionProviderKind.DirectML, ExportOptimization.Plain),
                 })
        {
            var choice = ExportChoice.For(Cpu, TinySd1, () => provider);
            Assert.Equal(expected, choice.Optimize);
            Assert.Null(choice.StepCacheBranch);
        }
    }

    [Fact]
    public void A_named_profile_does_not_ask_for_the_provider()
    {
        var choice = ExportChoice.For(Cpu with { ExportOptimize = ExportOptimization.Cuda }, TinySd1, () => throw new InvalidOperationException("asked"));
        Assert.Equal(ExportOptimization.Cuda, choice.Optimize);
        Assert.Contains("exportOptimize setting", choice.Reason, StringComparison.Ordinal);
    }
}

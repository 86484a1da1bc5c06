using CTCal.Contracts;
using CTCal.Export;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// A folder as OnnxStack's converter leaves it: only text_encoder/, unet/, vae_decoder/, vae_encoder/ model.onnx and
/// tokenizer/ (made here by exporting a tiny fixture and deleting everything else). It is served with defaults read from
/// the graphs or assumed, stated in one log line, and generates deterministically per seed.
/// </summary>
public sealed class OnnxStackFolderTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-onnxstack");
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

    private (OnnxImageGenerator Generator, RecordingLog Log) Create()
    {
        var log = new RecordingLog();
        var runtime = new PluginRuntime(
            new PluginSettings { ModelsFolder = Models, ExecutionProviders = [ExecutionProviderKind.Cpu], IntraOpThreads = 1, InterOpThreads = 1 },
            log);
        _runtimes.Add(runtime);
        return (new OnnxImageGenerator(runtime), log);
    }

    /// <summary>Exports <paramref name="fixture"/> as model <paramref name="id"/>, keeping only the OnnxStack files when <paramref name="strip"/>.</summary>
    private string Export(string fixture, string id, bool strip)
    {
        string folder = Path.Combine(Models, id);
        OnnxExporter.Export(new ExportOptions { ModelFolder = Path.Combine(TestPaths.Fixtures, fixture), OutputFolder = folder });
        if (strip)
        {
            string[] keep = ["text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx", "vae_encoder/model.onnx"];
            foreach (string file in Directory.GetFiles(folder, "*", SearchOption.AllDirectories))
            {
                string relative = Path.GetRelativePath(folder, file).Replace('\\', '/');
                if (!relative.StartsWith("tokenizer/", StringComparison.Ordinal) && !keep.Contains(relative))
                {
                    File.Delete(file);
                }
            }

            Directory.Delete(Path.Combine(folder, "scheduler"));
        }

        return folder;
    }

    private static GenerationRequest Request(string model, long seed) => new()
    {
        Model = model, Prompt = "a red cube", Width = 64, Height = 64, Steps = 3, Seed = seed, Scheduler = "euler_a",
    };

    [Fact]
    public async Task An_onnxstack_style_folder_is_served_with_inferred_defaults_stated_in_one_log_line()
    {
        string folder = Export("tiny-sd1", "stripped", strip: true);
        Assert.Equal(["model.onnx"], Directory.GetFiles(Path.Combine(folder, "unet")).Select(Path.GetFileName));
        Assert.False(File.Exists(Path.Combine(folder, "model_index.json")));
        string complete = Export("tiny-sd1", "complete", strip: false);
        // the complete export, with SD 1.5's published scheduler config (the default a folder without one gets) for its own
        File.WriteAllText(Path.Combine(complete, "scheduler", "scheduler_config.json"), Core.Diffusers.ReferenceModels.Sd15.SchedulerConfigJson);
        var (generator, log) = Create();

        var models = await generator.ListModelsAsync();
        var model = Assert.Single(models, m => m.Id == "stripped");
        Assert.Equal(("sd1", 512, 512, true), (model.Family, model.DefaultWidth, model.DefaultHeight, model.HasVaeEncoder));
        string line = Assert.Single(log.Entries.Where(e => e.Severity == LogSeverity.Information && e.Message.Contains("defaults inferred", StringComparison.Ordinal)).Select(e => e.Message));
        Assert.Contains(folder, line, StringComparison.Ordinal);
        Assert.Contains("family sd1 from the text encoder 32 wide, 2 layers, quick_gelu", line, StringComparison.Ordinal);
        Assert.Contains("4 latent channels", line, StringComparison.Ordinal);
        Assert.Contains("cross-attention 32 wide", line, StringComparison.Ordinal);
        Assert.Contains("native size 512x512 (assumed", line, StringComparison.Ordinal);
        Assert.Contains("prediction epsilon (assumed: v-prediction cannot be read from graphs", line, StringComparison.Ordinal);
        Assert.Contains("VAE scaling factor 0.18215 (assumed", line, StringComparison.Ordinal);
        Assert.Empty(log.Warnings);

        var a = await generator.GenerateAsync(Request("stripped", 5));
        var b = await generator.GenerateAsync(Request("stripped", 5));
        var c = await generator.GenerateAsync(Request("stripped", 6));
        Assert.Equal(a.Images[0].Png, b.Images[0].Png);
        Assert.NotEqual(a.Images[0].Png, c.Images[0].Png);

        // The inferred and assumed defaults (VAE scale factor, epsilon, 0.18215, SD 1.5's scheduler) are what the complete
        // export's configs and manifest say: pixel for pixel the same image (the PNG text chunks name the model).
        var full = await generator.GenerateAsync(Request("complete", 5));
        Assert.Equal(Pixels(full.Images[0].Png), Pixels(a.Images[0].Png));
    }

    [Fact]
    public async Task The_family_of_a_stripped_sd2_style_folder_comes_from_its_text_encoder_graph()
    {
        Export("tiny-sd2-style", "sd2ish", strip: true);
        var (generator, log) = Create();
        var model = Assert.Single(await generator.ListModelsAsync());
        Assert.Equal("sd2", model.Family);
        Assert.Contains(log.Entries, e => e.Message.Contains("family sd2 from the text encoder 40 wide, 2 layers, gelu", StringComparison.Ordinal));
    }

    private static byte[] Pixels(byte[] png) => Imaging.PngDecoder.Decode(png).Rgb;
}

using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Hosting;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// The plugin's one-click export takes an original single-file checkpoint as <see cref="ModelExportRequest.CheckpointFolder"/>
/// (with its tokenizer and configs given), registers the same model the folder gives, and refuses a pickle file; an SD3
/// diffusers folder exports and generates.
/// </summary>
public sealed class SingleFileExportTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-single-export");

    public void Dispose() => Directory.Delete(_root, true);

    /// <summary>The ONNX plugin copied under the test folder and loaded by the host, with its one exporter and generator.</summary>
    private (PluginHost Host, IModelExporter Exporter, IImageGenerator Generator) LoadPlugin()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        string plugins = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));
        var log = new RecordingLog();
        var host = PluginHost.Load(PluginsFile.Load(plugins), log, _ => log);
        var plugin = Assert.Single(host.Plugins);
        return (host, Assert.Single(plugin.Exporters).Value, Assert.Single(plugin.Generators).Value);
    }

    [Fact]
    public async Task One_click_export_of_a_single_file_registers_the_folders_model_and_generates()
    {
        var (host, exporter, generator) = LoadPlugin();
        using var _ = host;

        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_root, "tiny.safetensors"), ModelFamily.Sd1);
        var fromFile = await exporter.ExportAsync(new ModelExportRequest(file, "from-file") { ConfigFolder = TestWeightFolders.TinySd1 });
        var fromFolder = await exporter.ExportAsync(new ModelExportRequest(TestWeightFolders.TinySd1, "from-folder"));
        foreach (string part in new[] { "text_encoder", "unet", "vae_decoder" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(fromFolder.Folder, part, "model.onnx")), File.ReadAllBytes(Path.Combine(fromFile.Folder, part, "model.onnx")));
        }

        var image = await generator.GenerateAsync(new GenerationRequest
        {
            Model = "from-file", Prompt = "a red cube", Width = 32, Height = 32, Steps = 2, Seed = 1, Scheduler = "euler_a",
        });
        Assert.NotEmpty(Assert.Single(image.Images).Png);

        string ckpt = Path.Combine(_root, "model.ckpt");
        File.WriteAllBytes(ckpt, [0x80, 0x02]);
        var e = await Assert.ThrowsAsync<ArgumentException>(() => exporter.ExportAsync(new ModelExportRequest(ckpt, "pickle")));
        Assert.Contains(ckpt, e.Message);
        Assert.Contains("pickle", e.Message);
    }

    /// <summary>One-click export of an SD3 diffusers folder (no T5) registers a model the plugin generates with.</summary>
    [Fact]
    public async Task One_click_export_of_an_SD3_folder_registers_a_model_that_generates()
    {
        var (host, exporter, generator) = LoadPlugin();
        using var _ = host;

        string sd3 = TinySd3Folder.Write(Path.Combine(_root, "sd3-source"), seed: 3);
        var exported = await exporter.ExportAsync(new ModelExportRequest(sd3, "sd3"));
        Assert.True(File.Exists(Path.Combine(exported.Folder, "transformer", "model.onnx")));
        Assert.Equal(ModelFamily.Sd3, Assert.Single(await generator.ListModelsAsync(), m => m.Id == "sd3").Family);

        var result = await generator.GenerateAsync(new GenerationRequest { Model = "sd3", Prompt = "a red cube", Width = 16, Height = 16, Steps = 2, Seed = 1 });
        Assert.Equal("FlowMatchEulerDiscreteScheduler", result.Parameters.Scheduler);
        Assert.NotEmpty(Assert.Single(result.Images).Png);
        Assert.Contains(result.Warnings, w => w.Contains("text_encoder_3", StringComparison.Ordinal));
    }
}

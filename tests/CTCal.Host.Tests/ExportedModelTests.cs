using CTCal.Contracts;
using CTCal.Core.Threading;
using CTCal.Hosting;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// The whole chain on the tiny diffusers fixture: the host loads the plugin, its <see cref="IModelExporter"/> exports
/// the safetensors checkpoint to ONNX (CTCal.Export) into the models folder, and its generator renders from it.
/// </summary>
public sealed class ExportedModelTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-exported");

    public void Dispose() => Directory.Delete(_root, true);

    [Fact]
    public async Task ExportThenGenerateConcurrentlyAndSequentiallyAlike()
    {
        PluginFolders.CopyPlugin(_root, "onnx");
        string file = PluginFolders.WritePluginsJson(_root, PluginFolders.Entry("ctcal.onnx", "onnx"));
        var log = new RecordingLog();
        using var host = PluginHost.Load(PluginsFile.Load(file), log, _ => log);
        Assert.Empty(host.Failures);
        var plugin = Assert.Single(host.Plugins);
        Assert.Single(plugin.FineTuners);
        var exporter = Assert.Single(plugin.Exporters).Value;
        var generator = Assert.Single(plugin.Generators).Value;

        var stages = new List<string>();
        var model = await exporter.ExportAsync(
            new ModelExportRequest(Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "tiny-sd1"),
            new SynchronousProgress<OperationProgress>(p => stages.Add(p.Stage)));
        Assert.Equal("tiny-sd1", model.Id);
        Assert.Equal(Path.Combine(_root, "models", "tiny-sd1"), model.Folder);
        Assert.NotEmpty(stages);
        Assert.Contains(await generator.ListModelsAsync(), m => m.Id == "tiny-sd1");

        // Exporting again without Overwrite is refused; with it, the model is replaced.
        await Assert.ThrowsAsync<InvalidOperationException>(() => exporter.ExportAsync(new ModelExportRequest(Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "tiny-sd1")));

        GenerationRequest Request(long seed) => new()
        {
            Model = "tiny-sd1",
            Prompt = "a red cube on top of a blue sphere",
            NegativePrompt = "blurry",
            Width = 32,
            Height = 32,
            Steps = 2,
            Seed = seed,
            Scheduler = "euler_a",
        };

        var sequential = new List<byte[]>();
        for (int i = 0; i < 8; i++)
        {
            var result = await generator.GenerateAsync(Request(100 + i));
            Assert.Equal("CPU", result.ExecutionProvider);
            sequential.Add(result.Images[0].Png);
        }

        var concurrent = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(() => generator.GenerateAsync(Request(100 + i)))));
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(sequential[i], concurrent[i].Images[0].Png);
        }

        Assert.Equal(8, sequential.Select(Convert.ToBase64String).Distinct().Count());
        Assert.Equal(32, BitConverter.ToInt32(sequential[0].AsSpan(16, 4).ToArray().Reverse().ToArray())); // IHDR width

        // A batch reproduces the single images at every position.
        var batch = await generator.GenerateAsync(Request(100) with { BatchCount = 3 });
        Assert.Equal(sequential.Take(3), batch.Images.Select(im => im.Png));

        // Image-to-image through the exported VAE encoder, starting from the first image.
        var i2i = await generator.GenerateAsync(Request(5) with { Width = null, Height = null, InitImage = sequential[0], Strength = 0.6, Steps = 4 });
        Assert.Equal((32, 32), (i2i.Parameters.Width, i2i.Parameters.Height));
        Assert.Equal(0.6, i2i.Parameters.Strength);

        var replaced = await exporter.ExportAsync(new ModelExportRequest(Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "tiny-sd1", Overwrite: true));
        Assert.Equal("tiny-sd1", replaced.Id);
        Assert.Equal(sequential[0], (await generator.GenerateAsync(Request(100))).Images[0].Png);
    }
}

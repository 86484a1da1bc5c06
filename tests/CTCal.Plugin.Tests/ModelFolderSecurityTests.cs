using System.Text;
using CTCal.Contracts;
using CTCal.Export;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// Bad model folders fail for that model only, with a message naming the folder and file: a missing tokenizer, a
/// model_index.json that is not JSON, and an ONNX external-data <c>location</c> that leads out of the model folder.
/// </summary>
public sealed class ModelFolderSecurityTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-model-sec");
    private readonly List<PluginRuntime> _runtimes = [];

    public void Dispose()
    {
        foreach (var runtime in _runtimes) runtime.Dispose();
        Directory.Delete(_root, true);
    }

    private string Models => Path.Combine(_root, "models");

    private (OnnxImageGenerator Generator, RecordingLog Log) Create()
    {
        var log = new RecordingLog();
        var runtime = new PluginRuntime(new PluginSettings
        {
            ModelsFolder = Models, ExecutionProviders = [ExecutionProviderKind.Cpu], IntraOpThreads = 1, InterOpThreads = 1,
        }, log);
        _runtimes.Add(runtime);
        return (new OnnxImageGenerator(runtime), log);
    }

    private static GenerationRequest Request(string model) => new() { Model = model, Prompt = "a cube", Width = 32, Height = 32, Steps = 2, Seed = 1 };

    [Fact]
    public async Task AMissingTokenizerOrABrokenModelIndexFailsThatModelOnly()
    {
        TinySdModel.Create(Models, "tiny");
        string noTokenizer = TinySdModel.Create(Models, "no-tokenizer");
        Directory.Delete(Path.Combine(noTokenizer, "tokenizer"), true);
        string badIndex = TinySdModel.Create(Models, "bad-index");
        File.WriteAllText(Path.Combine(badIndex, "model_index.json"), "{ \"_class_name\": ");

        var (generator, log) = Create();
        var models = await generator.ListModelsAsync();
        Assert.Contains(models, m => m.Id == "tiny");
        Assert.DoesNotContain(models, m => m.Id == "no-tokenizer");
        Assert.Contains(log.Warnings, w => w.Contains("no-tokenizer") && w.Contains("tokenizer/vocab.json"));
        Assert.DoesNotContain(models, m => m.Id == "bad-index");
        Assert.Contains(log.Warnings, w => w.Contains("bad-index") && w.Contains("model_index.json"));
        await Assert.ThrowsAnyAsync<Exception>(() => generator.GenerateAsync(Request("bad-index")));
        await Assert.ThrowsAnyAsync<Exception>(() => generator.GenerateAsync(Request("no-tokenizer")));
        Assert.Single((await generator.GenerateAsync(Request("tiny"))).Images);
    }

    [Fact]
    public async Task ExternalDataOutsideTheModelFolderIsRefused()
    {
        TinySdModel.Create(Models, "tiny");
        string evil = Path.Combine(Models, "evil");
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = Path.Combine(TestPaths.Fixtures, "tiny-sd1"), OutputFolder = evil, ExternalDataThreshold = 0,
        });
        string unet = Path.Combine(evil, "unet", "model.onnx");
        string data = Path.Combine(evil, "unet", "model.onnx.data");
        Assert.True(File.Exists(data), "the export did not write external data");

        // Point every external-data location at a copy of the data outside the model folder (same length: the protobuf stays valid).
        const string outside = "../../../o.data";
        Assert.Equal("model.onnx.data".Length, outside.Length);
        File.Copy(data, Path.Combine(_root, "o.data"));
        File.Delete(data);
        byte[] bytes = File.ReadAllBytes(unet);
        byte[] from = Encoding.ASCII.GetBytes("model.onnx.data"), to = Encoding.ASCII.GetBytes(outside);
        int replaced = 0;
        for (int i = bytes.AsSpan().IndexOf(from); i >= 0; i = bytes.AsSpan().IndexOf(from))
        {
            to.CopyTo(bytes, i);
            replaced++;
        }
        Assert.True(replaced > 0);
        File.WriteAllBytes(unet, bytes);

        var (generator, _) = Create();
        var error = await Assert.ThrowsAnyAsync<Exception>(() => generator.GenerateAsync(Request("evil")));
        output.WriteLine(error.ToString());
        Assert.Contains("evil", error.ToString());
        Assert.Contains("escapes model directory", error.ToString()); // ONNX Runtime's own external-data path check
        Assert.Single((await generator.GenerateAsync(Request("tiny"))).Images);
    }
}

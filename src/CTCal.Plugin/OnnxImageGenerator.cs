using System.Composition;
using CTCal.Contracts;
using CTCal.Plugin.Hosting;

namespace CTCal.Plugin;

/// <summary><see cref="IImageGenerator"/> over the ONNX Stable Diffusion folders in the plugin's models folder.</summary>
[Export(typeof(IImageGenerator))]
[ExportMetadata(PluginMetadataKeys.Id, PluginInfo.GeneratorId)]
[ExportMetadata(PluginMetadataKeys.Name, PluginInfo.GeneratorName)]
[ExportMetadata(PluginMetadataKeys.Version, PluginInfo.Version)]
internal sealed class OnnxImageGenerator : IImageGenerator
{
    private readonly PluginRuntime _runtime;

    [ImportingConstructor]
    public OnnxImageGenerator(PluginRuntime runtime)
    {
        _runtime = runtime;
    }

    public Task<IReadOnlyList<ModelInfo>> ListModelsAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        IReadOnlyList<ModelInfo> models = _runtime.Catalog.Scan().Select(m => m.Info).ToArray();
        return Task.FromResult(models);
    }

    public Task<GenerationResult> GenerateAsync(
        GenerationRequest request,
        IProgress<GenerationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var model = _runtime.Catalog.Find(request.Model);
        throw new NotSupportedException($"Generation with {model.Info.Id} needs the CTCal.Core tokenizer and schedulers (not merged yet)");
    }

    public bool UnloadModel(string modelId) => _runtime.Unload(modelId);
}

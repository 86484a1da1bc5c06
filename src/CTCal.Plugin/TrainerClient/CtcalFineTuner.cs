using System.Composition;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Plugin.Hosting;

namespace CTCal.Plugin.TrainerClient;

/// <summary>
/// <see cref="IFineTuner"/> that runs <c>ctcal-train train --model --data --out [--steps] ... --progress json</c> as a sidecar process and, when the
/// trainer reports <c>done</c>, exports its final checkpoint with this plugin's <see cref="IModelExporter"/> so the
/// model is registered in the models folder.
/// </summary>
[Export(typeof(IFineTuner))]
[ExportMetadata(PluginMetadataKeys.Id, PluginInfo.FineTunerId)]
[ExportMetadata(PluginMetadataKeys.Name, PluginInfo.FineTunerName)]
[ExportMetadata(PluginMetadataKeys.Version, PluginInfo.Version)]
internal sealed class CtcalFineTuner : IFineTuner
{
    public const string TrainerName = "ctcal-train";

    private readonly PluginRuntime _runtime;
    private readonly IModelExporter _exporter;

    [ImportingConstructor]
    public CtcalFineTuner(PluginRuntime runtime, IModelExporter exporter)
    {
        _runtime = runtime;
        _exporter = exporter;
    }

    /// <summary>The trainer's command line (without the executable), one list item per argument.</summary>
    internal static IReadOnlyList<string> BuildArguments(FineTuneRequest request)
    {
        var args = new List<string>
        {
            "train",
            "--model", request.BaseCheckpointFolder,
            "--data", request.DatasetPath,
            "--out", request.OutputFolder,
        };
        if (request.MaxSteps is int steps)
        {
            args.Add("--steps");
            args.Add(steps.ToString(CultureInfo.InvariantCulture));
        }

        if (request.ExtraArguments is not null)
        {
            args.AddRange(request.ExtraArguments);
        }

        args.Add("--progress");
        args.Add("json");
        return args;
    }

    /// <summary>
    /// What to export for the trainer's final weights: a LoRA file (peft <c>lora_A</c>/<c>lora_B</c> or kohya
    /// <c>lora_down</c>/<c>lora_up</c> tensors) merged into the base checkpoint, full UNet weights (any other safetensors
    /// file, or a folder with <c>unet/diffusion_pytorch_model.safetensors</c>) over the base, or a whole diffusers folder.
    /// </summary>
    internal static ModelExportRequest ExportRequestFor(string checkpoint, FineTuneRequest request)
    {
        if (File.Exists(checkpoint) && checkpoint.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            return IsLora(checkpoint)
                ? new ModelExportRequest(request.BaseCheckpointFolder, request.ModelId, Overwrite: true, Loras: new[] { checkpoint })
                : new ModelExportRequest(request.BaseCheckpointFolder, request.ModelId, Overwrite: true, UnetWeights: checkpoint);
        }

        if (File.Exists(Path.Combine(checkpoint, "model_index.json")))
        {
            return new ModelExportRequest(checkpoint, request.ModelId, Overwrite: true);
        }

        string unet = Path.Combine(checkpoint, "unet", "diffusion_pytorch_model.safetensors");
        if (File.Exists(unet))
        {
            return new ModelExportRequest(request.BaseCheckpointFolder, request.ModelId, Overwrite: true, UnetWeights: unet);
        }

        throw new FineTuneException(
            $"Trainer's final checkpoint {checkpoint} is neither a .safetensors file, a diffusers folder (model_index.json) nor a folder with unet/diffusion_pytorch_model.safetensors");
    }

    private static bool IsLora(string safetensors)
    {
        using var file = SafetensorsFile.Open(safetensors);
        return LoraKeys.IsLoraFile(file.Tensors.Select(t => t.Name));
    }

    public async Task<FineTuneResult> FineTuneAsync(
        FineTuneRequest request,
        IProgress<OperationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!Directory.Exists(request.BaseCheckpointFolder))
        {
            throw new ArgumentException($"Base checkpoint folder {request.BaseCheckpointFolder} does not exist", nameof(request));
        }

        string trainer = _runtime.Settings.TrainerPath
            ?? TrainerSidecar.FindOnPath(TrainerName)
            ?? throw new FineTuneException($"Trainer '{TrainerName}' not found: set settings.trainerPath in plugins.json or put it on PATH");

        var sidecar = new TrainerSidecar(trainer, _runtime.Log);
        var done = await sidecar.RunAsync(BuildArguments(request), progress, cancellationToken).ConfigureAwait(false);
        string checkpoint = done.Path
            ?? throw new FineTuneException("Trainer's 'done' event names no final weights ('final_weights' or 'path')");
        if (!Path.IsPathRooted(checkpoint))
        {
            checkpoint = Path.GetFullPath(Path.Combine(request.OutputFolder, checkpoint));
        }

        // The method the trainer reported in its start event (vanilla or ctcal), recorded with the exported model.
        var export = ExportRequestFor(checkpoint, request) with { Method = done.Method };
        progress?.Report(new OperationProgress("export", 0, 0, $"Exporting {checkpoint} as {request.ModelId}"));
        var model = await _exporter.ExportAsync(export, progress, cancellationToken).ConfigureAwait(false);
        return new FineTuneResult(checkpoint, model, done.Step ?? 0);
    }
}

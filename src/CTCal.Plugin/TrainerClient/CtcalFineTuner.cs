using System.Composition;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Plugin.Hosting;

namespace CTCal.Plugin.TrainerClient;

/// <summary>
/// <see cref="IFineTuner"/> that writes the request's <see cref="FineTuneJob"/> as a job file, runs <c>ctcal-train train --config
/// &lt;job&gt;</c> as a sidecar process following its JSON progress and, when the
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

    /// <summary>
    /// The job as the trainer gets it: the request's job with progress set to <c>json</c> (this client follows the trainer's
    /// JSON events), checked before any process starts. Throws <see cref="ArgumentException"/> naming the problems.
    /// </summary>
    internal static FineTuneJob TrainerJob(FineTuneRequest request)
    {
        var job = request.Job with { Progress = "json" };
        var problems = job.Problems();
        if (problems.Count > 0)
        {
            throw new ArgumentException($"Fine-tune job for {request.ModelId}: {string.Join("; ", problems)}", nameof(request));
        }

        // The trainer runs in its own working folder: every path it gets is absolute.
        return job with
        {
            Model = Path.GetFullPath(job.Model!),
            Data = Path.GetFullPath(job.Data!),
            Out = Path.GetFullPath(job.Out!),
            Resume = job.Resume is null or "latest" ? job.Resume : Path.GetFullPath(job.Resume),
        };
    }

    /// <summary>
    /// The trainer's command line (without the executable): the job file and nothing else, so no value of the job is ever
    /// read as an option of the trainer.
    /// </summary>
    internal static IReadOnlyList<string> BuildArguments(string jobFile) => ["train", "--config", jobFile];

    /// <summary>
    /// What to export for the trainer's final weights: a LoRA file (peft <c>lora_A</c>/<c>lora_B</c> or kohya
    /// <c>lora_down</c>/<c>lora_up</c> tensors) merged into the base checkpoint, full UNet weights (any other safetensors
    /// file, or a folder with <c>unet/diffusion_pytorch_model.safetensors</c>) over the base, or a whole diffusers folder.
    /// </summary>
    internal static ModelExportRequest ExportRequestFor(string checkpoint, FineTuneRequest request) =>
        WithSingleFileOptions(ExportRequestForCheckpoint(checkpoint, request), request.Job);

    // A single-file base is exported with the job's single-file options (tokenizer, configs, prediction type, EMA).
    private static ModelExportRequest WithSingleFileOptions(ModelExportRequest export, FineTuneJob job) =>
        File.Exists(export.CheckpointFolder)
            ? export with { TokenizerFolder = job.Tokenizer, ConfigFolder = job.ModelConfig, PredictionType = job.PredictionType, UseEma = job.Ema }
            : export;

    private static ModelExportRequest ExportRequestForCheckpoint(string checkpoint, FineTuneRequest request)
    {
        if (File.Exists(checkpoint) && checkpoint.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            return IsLora(checkpoint)
                ? new ModelExportRequest(request.Job.Model!, request.ModelId, Overwrite: true, Loras: new[] { checkpoint })
                : new ModelExportRequest(request.Job.Model!, request.ModelId, Overwrite: true, UnetWeights: checkpoint);
        }

        if (File.Exists(Path.Combine(checkpoint, "model_index.json")))
        {
            return new ModelExportRequest(checkpoint, request.ModelId, Overwrite: true);
        }

        string unet = Path.Combine(checkpoint, "unet", "diffusion_pytorch_model.safetensors");
        if (File.Exists(unet))
        {
            return new ModelExportRequest(request.Job.Model!, request.ModelId, Overwrite: true, UnetWeights: unet);
        }

        throw new FineTuneException(
            $"Trainer's final checkpoint {checkpoint} is neither a .safetensors file, a diffusers folder (model_index.json) nor a folder with unet/diffusion_pytorch_model.safetensors");
    }

    /// <summary>The temporary job file for a run into <paramref name="outputFolder"/>: a hidden file in its parent folder.</summary>
    internal static string JobFilePath(string outputFolder)
    {
        string output = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputFolder));
        string parent = Path.GetDirectoryName(output) ?? output;
        return Path.Combine(parent, $".{Path.GetFileName(output)}.ctcal-job-{Guid.NewGuid():N}.json");
    }

    private static bool IsLora(string safetensors)
    {
        using var file = SafetensorsFile.Open(safetensors);
        return LoraKeys.IsLoraFile(file.Tensors.Select(t => t.Name));
    }

    /// <summary>An SD3 diffusers folder by the core's rule (<see cref="ModelFolder.IsSD3"/>); a malformed index is the trainer's to report.</summary>
    private static bool IsSD3Folder(string folder)
    {
        try
        {
            return ModelFolder.Open(folder, ModelComponents.None).IsSD3;
        }
        catch (CTCal.Core.Diffusers.DiffusersConfigException)
        {
            return false;
        }
    }

    public async Task<FineTuneResult> FineTuneAsync(
        FineTuneRequest request,
        IProgress<OperationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var job = TrainerJob(request);
        if (!Directory.Exists(job.Model) && !File.Exists(job.Model))
        {
            throw new ArgumentException($"Base checkpoint folder {job.Model} does not exist", nameof(request));
        }

        if (job.Full && Directory.Exists(job.Model) && IsSD3Folder(job.Model!))
        {
            // The trainer would write transformer/diffusion_pytorch_model.safetensors, which the export cannot take (it replaces
            // UNet weights only): refused before hours of training. A LoRA is merged into the SD3 transformer by the export.
            throw new ArgumentException(
                $"Fine-tune job for {request.ModelId}: full fine-tuning of the SD3 model {job.Model} cannot be exported (the exporter replaces UNet weights only); train a LoRA (full: false)",
                nameof(request));
        }

        string trainer = TrainerLocator.Find(_runtime.Settings.TrainerPath, _runtime.PluginDirectory)
            ?? throw new FineTuneException(
                $"Trainer '{TrainerName}' not found: set settings.trainerPath in plugins.json, install the plugin package (it carries {TrainerLocator.PackagedFolder}/{TrainerLocator.FileName}) or put it on PATH");

        // The job file goes where the host asked the trainer's output to go (beside the output folder, so the trainer's
        // own folder checks never see it), never into a system folder; it is removed afterwards.
        string jobFile = JobFilePath(job.Out!);
        Directory.CreateDirectory(Path.GetDirectoryName(jobFile)!);
        TrainerEvent done;
        try
        {
            AtomicFile.WriteText(jobFile, FineTuneJobJson.ToJson(job));
            var sidecar = new TrainerSidecar(trainer, _runtime.Log);
            done = await sidecar.RunAsync(BuildArguments(jobFile), progress, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            File.Delete(jobFile);
        }

        string checkpoint = done.Path
            ?? throw new FineTuneException("Trainer's 'done' event names no final weights ('final_weights' or 'path')");
        if (!Path.IsPathRooted(checkpoint))
        {
            checkpoint = Path.GetFullPath(Path.Combine(job.Out!, checkpoint));
        }

        // The method the trainer reported in its start event (vanilla or ctcal), recorded with the exported model.
        var export = ExportRequestFor(checkpoint, request) with { Method = done.Method };
        progress?.Report(new OperationProgress("export", 0, 0, $"Exporting {checkpoint} as {request.ModelId}"));
        var model = await _exporter.ExportAsync(export, progress, cancellationToken).ConfigureAwait(false);
        return new FineTuneResult(checkpoint, model, done.Step ?? 0);
    }
}

using System.Composition;
using System.Text.RegularExpressions;
using CTCal.Contracts;
using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Threading;
using CTCal.Export;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Models;

namespace CTCal.Plugin.ModelExport;

/// <summary>
/// <see cref="IModelExporter"/> over the CTCal.Export library: writes the ONNX folder straight into the plugin's models
/// folder (the library writes a temporary sibling and swaps it in, so a failed export leaves nothing half-written),
/// unloading a loaded model of the same id first so its sessions do not hold the old files.
/// </summary>
[Export(typeof(IModelExporter))]
[ExportMetadata(PluginMetadataKeys.Id, PluginInfo.ExporterId)]
[ExportMetadata(PluginMetadataKeys.Name, PluginInfo.ExporterName)]
[ExportMetadata(PluginMetadataKeys.Version, PluginInfo.Version)]
internal sealed class OnnxModelExporter : IModelExporter
{
    private static readonly Regex IdPattern = new("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", RegexOptions.CultureInvariant);

    private readonly PluginRuntime _runtime;

    [ImportingConstructor]
    public OnnxModelExporter(PluginRuntime runtime)
    {
        _runtime = runtime;
    }

    public Task<ModelInfo> ExportAsync(
        ModelExportRequest request,
        IProgress<OperationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!IdPattern.IsMatch(request.ModelId) || request.ModelId.Contains(".."))
        {
            throw new ArgumentException($"ModelId '{request.ModelId}' is not a valid folder name (letters, digits, '.', '-', '_')", nameof(request));
        }

        if (!Directory.Exists(request.CheckpointFolder) && !File.Exists(request.CheckpointFolder))
        {
            throw new ArgumentException($"CheckpointFolder {request.CheckpointFolder} does not exist", nameof(request));
        }

        if (WeightFiles.IsPickle(request.CheckpointFolder))
        {
            throw new ArgumentException(WeightFiles.PickleRefusal(request.CheckpointFolder), nameof(request));
        }

        if (request.UnetWeights is not null && !File.Exists(request.UnetWeights))
        {
            throw new ArgumentException($"UnetWeights {request.UnetWeights} does not exist", nameof(request));
        }

        var loras = request.Loras ?? Array.Empty<string>();
        foreach (string lora in loras)
        {
            if (!File.Exists(lora))
            {
                throw new ArgumentException($"LoRA file {lora} does not exist", nameof(request));
            }
        }

        Directory.CreateDirectory(_runtime.Settings.ModelsFolder);
        string target = PluginPaths.ResolveInside(_runtime.Settings.ModelsFolder, request.ModelId, "ModelId");
        _runtime.Catalog.Recover(request.ModelId); // a model hidden by a killed export counts as existing
        if (Directory.Exists(target) && !request.Overwrite)
        {
            throw new InvalidOperationException($"Model '{request.ModelId}' already exists at {target}; set Overwrite to replace it");
        }

        return Task.Run(
            () =>
            {
                _runtime.Unload(request.ModelId);
                var relay = progress is null
                    ? null
                    : new SynchronousProgress<ExportProgress>(p => progress.Report(new OperationProgress(p.Component, p.BytesDone, p.BytesTotal, p.Stage)));
                var choice = ExportChoice.For(_runtime.Settings, request.CheckpointFolder, _runtime.SessionProvider);
                _runtime.Log.Log(LogSeverity.Information, $"Exporting {request.CheckpointFolder} to {target}: {choice.Reason}");
                if (File.Exists(request.CheckpointFolder))
                {
                    LogSingleFileNotes(request);
                }

                OnnxExporter.Export(
                    new ExportOptions
                    {
                        ModelFolder = request.CheckpointFolder,
                        OutputFolder = target,
                        UnetWeights = request.UnetWeights,
                        Loras = loras.Select(l => new LoraSpec(l)).ToArray(),
                        Force = request.Overwrite,
                        Optimize = choice.Optimize,
                        Precision = choice.Precision,
                        StepCacheBranch = choice.StepCacheBranch,
                        TrainingMethod = request.Method, // never guessed: a vanilla fine-tune is not "ctcal"
                        SingleFile = new SingleFileOptions
                        {
                            TokenizerFolder = request.TokenizerFolder,
                            ConfigFolder = request.ConfigFolder,
                            PredictionType = request.PredictionType,
                            UseEma = request.UseEma,
                        },
                    },
                    relay,
                    cancellationToken);
                _runtime.Catalog.Refresh(); // the folder was replaced: list it afresh even if its timestamp looks the same
                var model = OnnxModelFolder.Load(target);
                _runtime.Log.Log(LogSeverity.Information, $"Registered model {model.Info.Id} ({model.Info.Folder})");
                return model.Info;
            },
            cancellationToken);
    }

    // What a single file's configs assumed (family, prediction type, ...); a file that cannot be read is reported by the export.
    private void LogSingleFileNotes(ModelExportRequest request)
    {
        try
        {
            var checkpoint = SingleFileCheckpoint.Open(request.CheckpointFolder, new SingleFileOptions
            {
                TokenizerFolder = request.TokenizerFolder, ConfigFolder = request.ConfigFolder, PredictionType = request.PredictionType, UseEma = request.UseEma,
            });
            foreach (string note in checkpoint.Notes)
            {
                _runtime.Log.Log(LogSeverity.Information, $"Single file {request.CheckpointFolder}: {note}");
            }
        }
        catch (Exception e) when (e is ModelFolderException or CTCal.Core.Safetensors.SafetensorsException or CTCal.Core.Diffusers.DiffusersConfigException or ArgumentException or IOException)
        {
            _runtime.Log.Log(LogSeverity.Warning, e.Message);
        }
    }
}

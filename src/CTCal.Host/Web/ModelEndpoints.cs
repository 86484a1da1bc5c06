using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Core.Threading;
using CTCal.Host.Cli;
using CTCal.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace CTCal.Host.Web;

/// <summary>
/// The models page's API: every generator's models with family, size and the method and provenance their
/// <c>ctcal_manifest.json</c> records; the plugins and their load failures; export of any diffusers folder or
/// single-file checkpoint into the models folder.
/// </summary>
internal static class ModelEndpoints
{
    /// <summary>The body of <c>POST /api/export</c> (the options of <c>ctcal-host export</c>).</summary>
    internal sealed record ExportBody(string? Source, string? ModelId, bool Overwrite, string? Tokenizer, string? ConfigFolder, string? PredictionType, bool Ema);

    public static void Map(WebApplication app, WebState state)
    {
        app.MapGet("/api/options", () => Results.Json(new
        {
            schedulers = SchedulerFactory.Names,
            methods = FineTuneJob.Methods,
            predictionTypes = FineTuneJob.PredictionTypes,
            limits = new { GenerationRules.MaxSide, GenerationRules.MaxSteps, GenerationRules.MaxCount, GenerationRules.MaxGuidance },
            fineTune = new { FineTuneJob.Defaults.Steps, FineTuneJob.Defaults.LoraRank, FineTuneJob.Defaults.Resolution, FineTuneJob.Defaults.Method },
        }, WebServer.Json));

        app.MapGet("/api/plugins", () => Results.Json(new
        {
            plugins = state.Plugins.Plugins.Select(p => new
            {
                p.Entry.Id,
                generators = p.Generators.Select(e => e.Metadata.ToString()),
                exporters = p.Exporters.Select(e => e.Metadata.ToString()),
                fineTuners = p.FineTuners.Select(e => e.Metadata.ToString()),
            }),
            failures = state.Plugins.Failures.Select(f => new { plugin = f.PluginId, message = $"{f.What}: {PluginFailure.Describe(f.Error)}" }),
        }, WebServer.Json));

        app.MapGet("/api/models", async (CancellationToken ct) =>
        {
            var models = new List<object>();
            var errors = state.Plugins.Failures.Select(f => new { plugin = f.PluginId, message = $"{f.What}: {PluginFailure.Describe(f.Error)}" }).ToList();
            foreach (var generator in state.Plugins.Generators)
            {
                IReadOnlyList<ModelInfo> list;
                try
                {
                    list = await generator.Value.ListModelsAsync(ct);
                }
                catch (Exception ex) when (ex is not (OperationCanceledException or OutOfMemoryException))
                {
                    errors.Add(new { plugin = generator.PluginId, message = $"listing models failed: {ex.Message}" });
                    continue;
                }

                models.AddRange(list.Select(m => Describe(generator.PluginId, m)));
            }

            return Results.Json(new { models, errors }, WebServer.Json);
        });

        app.MapPost("/api/export", (HttpContext ctx) => WebServer.WithBody<ExportBody>(ctx, (ExportBody body) =>
        {
            string source = Required(body.Source, "source", "a diffusers folder or a single-file .safetensors checkpoint");
            if (!Directory.Exists(source) && !File.Exists(source))
            {
                throw new InputException("source", $"Source '{source}' is neither a folder nor a file");
            }

            CheckModelId(body.ModelId);
            var exporter = state.Plugins.Exporters.FirstOrDefault()
                ?? throw new InputException("source", "No loaded plugin exports models");
            var request = new ModelExportRequest(Path.GetFullPath(source), body.ModelId!, body.Overwrite)
            {
                TokenizerFolder = body.Tokenizer is { Length: > 0 } t ? Path.GetFullPath(t) : null,
                ConfigFolder = body.ConfigFolder is { Length: > 0 } c ? Path.GetFullPath(c) : null,
                PredictionType = body.PredictionType is { Length: > 0 } p ? p : null,
                UseEma = body.Ema,
            };
            return StartExport(state, exporter, request);
        }));
    }

    /// <summary>Starts an export job (progress events per stage and per percent, <c>done</c> with the registered model).</summary>
    internal static IResult StartExport(WebState state, PluginExport<IModelExporter> exporter, ModelExportRequest request)
    {
        var job = state.Jobs.Start("export", new { request.CheckpointFolder, request.ModelId, request.Overwrite }, async job =>
        {
            var model = await exporter.Value.ExportAsync(request, OperationEvents(job), job.Token);
            return new { model = Describe(exporter.PluginId, model) };
        });
        return Results.Json(new { id = job.Id }, WebServer.Json, statusCode: StatusCodes.Status202Accepted);
    }

    /// <summary>
    /// Progress of an export or fine-tune as <c>progress</c> events: every event with metrics or a message, and byte
    /// counters only when their stage or whole percent changes (an export reports thousands of them).
    /// </summary>
    internal static IProgress<OperationProgress> OperationEvents(Job job)
    {
        string? lastStage = null;
        long lastPercent = -1;
        return new SynchronousProgress<OperationProgress>(p =>
        {
            long percent = p.Total > 0 ? p.Current * 100 / p.Total : -1;
            bool counterOnly = p.Metrics is not { Count: > 0 } && p.Message is null or "writing";
            if (counterOnly && p.Stage == lastStage && percent == lastPercent)
            {
                return;
            }

            lastStage = p.Stage;
            lastPercent = percent;
            job.Publish("progress", new { p.Stage, p.Current, p.Total, p.Message, p.Metrics });
        });
    }

    /// <summary>A model as the pages show it: the contract's fields plus the manifest's method and provenance.</summary>
    internal static object Describe(string pluginId, ModelInfo m)
    {
        OnnxModelManifest? manifest = null;
        string? manifestError = null;
        try
        {
            manifest = OnnxModelManifest.TryRead(m.Folder);
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or System.Text.Json.JsonException or UnauthorizedAccessException)
        {
            manifestError = ex.Message;
        }

        return new
        {
            plugin = pluginId,
            m.Id,
            m.Name,
            m.Family,
            width = m.DefaultWidth,
            height = m.DefaultHeight,
            m.HasVaeEncoder,
            m.Description,
            m.Folder,
            method = manifest?.Method,
            provenance = manifest is null ? null : new
            {
                source = manifest.SourceFolder,
                unetWeights = manifest.UnetWeights?.Path,
                loras = manifest.Loras.Select(l => l.Path),
                manifest.Steps,
                manifest.Exporter,
                created = manifest.CreatedUtc,
                // what the graphs are: the export profile, the precision, and the step-cache branch when exported with it
                optimize = manifest.OptimizeOrPlain,
                precision = manifest.PrecisionOrDerived,
                stepCacheBranch = manifest.StepCache?.Branch,
            },
            manifestError,
        };
    }

    internal static string Required(string? value, string field, string what) =>
        string.IsNullOrWhiteSpace(value) ? throw new InputException(field, $"{field} is required: {what}") : value;

    internal static void CheckModelId(string? id)
    {
        if (!GenerationRules.IsModelId(id))
        {
            throw new InputException("modelId", $"Model id '{id}' must be letters, digits, '.', '-', '_' (not starting with '.' or '-')");
        }
    }
}

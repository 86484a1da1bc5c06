using System.Globalization;
using CTCal.Contracts;
using CTCal.Host.Cli;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace CTCal.Host.Web;

/// <summary>
/// The fine-tune page's API: <c>POST /api/finetune</c> builds the trainer job with the finetune verb's rule
/// (<see cref="HostCommands.FineTuneJobFrom"/>) and its checks (<see cref="FineTuneJob.Problems"/>), then runs the
/// plugin's <see cref="IFineTuner"/>, whose trainer events become <c>progress</c> events (loss, lr, step); resume
/// continues from the output folder's latest checkpoint; <c>POST /api/finetunes/{id}/export</c> exports a finished
/// fine-tune's final weights into the models folder with one click.
/// </summary>
internal static class FineTuneEndpoints
{
    /// <summary>The body of <c>POST /api/finetune</c>.</summary>
    internal sealed record FineTuneBody(string? BaseModel, string? Data, string? Output, string? ModelId, string? Method, int? Steps, int? LoraRank, int? Resolution, bool Resume);

    /// <summary>The body of <c>POST /api/finetunes/{id}/export</c>.</summary>
    internal sealed record ExportFineTuneBody(string? ModelId, bool Overwrite);

    /// <summary>What a finished fine-tune leaves for its export: the job the trainer ran and its final weights.</summary>
    internal sealed record FinishedFineTune(FineTuneJob Job, string Checkpoint);

    public static void Map(WebApplication app, WebState state)
    {
        app.MapPost("/api/finetune", (HttpContext ctx) => WebServer.WithBody<FineTuneBody>(ctx, (FineTuneBody body) =>
        {
            var request = ToRequest(body);
            var tuner = state.Plugins.FineTuners.FirstOrDefault()
                ?? throw new InputException("baseModel", "No loaded plugin offers fine-tuning");
            var job = state.Jobs.Start("finetune", body, async job =>
            {
                var result = await tuner.Value.FineTuneAsync(request, ModelEndpoints.OperationEvents(job), job.Token);
                job.Result = new FinishedFineTune(request.Job, result.CheckpointFolder);
                return new { model = ModelEndpoints.Describe(tuner.PluginId, result.Model), checkpoint = result.CheckpointFolder, result.Steps };
            });
            return Results.Json(new { id = job.Id }, WebServer.Json, statusCode: StatusCodes.Status202Accepted);
        }));

        app.MapPost("/api/finetunes/{id}/export", (string id, HttpContext ctx) => WebServer.WithBody<ExportFineTuneBody>(ctx, (ExportFineTuneBody body) =>
        {
            if (state.Jobs.Find(id) is not { Kind: "finetune" } job)
            {
                return WebServer.Error(StatusCodes.Status404NotFound, "id", $"No fine-tune '{id}'");
            }

            if (job.Result is not FinishedFineTune finished)
            {
                throw new InputException("id", $"Fine-tune {id} is {job.State.ToString().ToLowerInvariant()}, not finished: only a finished fine-tune can be exported");
            }

            ModelEndpoints.CheckModelId(body.ModelId);
            var exporter = state.Plugins.Exporters.FirstOrDefault()
                ?? throw new InputException("modelId", "No loaded plugin exports models");
            return ModelEndpoints.StartExport(state, exporter, ExportRequestFor(finished, body.ModelId!, body.Overwrite));
        }));
    }

    /// <summary>The fine-tune request of <paramref name="body"/>; throws <see cref="InputException"/> naming the field.</summary>
    internal static FineTuneRequest ToRequest(FineTuneBody body)
    {
        string baseModel = ModelEndpoints.Required(body.BaseModel, "baseModel", "the diffusers folder or single-file checkpoint to start from");
        string data = ModelEndpoints.Required(body.Data, "data", "the dataset folder");
        string output = ModelEndpoints.Required(body.Output, "output", "the folder for the trainer's checkpoints");
        ModelEndpoints.CheckModelId(body.ModelId);
        if (!Directory.Exists(baseModel) && !File.Exists(baseModel))
        {
            throw new InputException("baseModel", $"Base model '{baseModel}' does not exist");
        }

        if (!Directory.Exists(data))
        {
            throw new InputException("data", $"Dataset folder '{data}' does not exist");
        }

        var extra = new List<string>();
        if (body.Method is { Length: > 0 } method)
        {
            extra.AddRange(["--method", method]);
        }

        if (body.LoraRank is int rank)
        {
            extra.AddRange(["--lora-rank", rank.ToString(CultureInfo.InvariantCulture)]);
        }

        if (body.Resolution is int resolution)
        {
            extra.AddRange(["--resolution", resolution.ToString(CultureInfo.InvariantCulture)]);
        }

        if (body.Resume)
        {
            extra.AddRange(["--resume", "latest"]);
        }

        FineTuneJob job;
        try
        {
            job = HostCommands.FineTuneJobFrom(null, baseModel, data, output, body.Steps, extra);
        }
        catch (ArgumentException ex) when (ex is not InputException)
        {
            throw new InputException("job", ex.Message);
        }

        // Each of the job's problems starts with the trainer option it concerns ("lora-rank must be positive ...").
        var problems = job.Problems();
        if (problems.Count > 0)
        {
            throw new InputException(problems.Select(p => new InputProblem(FieldOf(p), p)).ToList());
        }

        return new FineTuneRequest(body.ModelId!, job);
    }

    private static string FieldOf(string problem)
    {
        string key = problem.Split(' ', 2)[0];
        return key switch
        {
            "lora-rank" => "loraRank",
            "steps" => "steps",
            "method" => "method",
            _ => key,
        };
    }

    /// <summary>
    /// The export of a finished fine-tune's final weights under <paramref name="modelId"/>: a diffusers folder as it is; a
    /// LoRA file (a LoRA job) merged into the base; full UNet weights (a full job: a file, or a folder with
    /// <c>unet/diffusion_pytorch_model.safetensors</c>) over the base. The method is the job's.
    /// </summary>
    internal static ModelExportRequest ExportRequestFor(FinishedFineTune finished, string modelId, bool overwrite)
    {
        string checkpoint = finished.Checkpoint;
        string baseModel = finished.Job.Model!;
        string unet = Path.Combine(checkpoint, "unet", "diffusion_pytorch_model.safetensors");
        var request = File.Exists(Path.Combine(checkpoint, "model_index.json")) ? new ModelExportRequest(checkpoint, modelId, overwrite)
            : Directory.Exists(checkpoint) && File.Exists(unet) ? new ModelExportRequest(baseModel, modelId, overwrite, UnetWeights: unet)
            : File.Exists(checkpoint) && !finished.Job.Full && !IsUnetFile(checkpoint) ? new ModelExportRequest(baseModel, modelId, overwrite, Loras: [checkpoint])
            : File.Exists(checkpoint) ? new ModelExportRequest(baseModel, modelId, overwrite, UnetWeights: checkpoint)
            : throw new InputException("id", $"The fine-tune's final weights {checkpoint} are gone");
        return request with { Method = finished.Job.Method };
    }

    // The trainer names full UNet weights diffusion_pytorch_model.safetensors and LoRAs pytorch_lora_weights.safetensors.
    private static bool IsUnetFile(string path) => Path.GetFileName(path) == "diffusion_pytorch_model.safetensors";
}

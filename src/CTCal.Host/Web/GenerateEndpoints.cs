using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Core.Threading;
using CTCal.Host.Cli;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace CTCal.Host.Web;

/// <summary>
/// The generate, gallery and compare pages' API: <c>POST /api/generate</c> checks the request with the CLI's rules
/// (<see cref="GenerationRules"/>) and starts a job whose events are per-step <c>progress</c>, one <c>image</c> per
/// stored gallery image, and <c>done</c>; the gallery lists and serves the stored images.
/// </summary>
internal static class GenerateEndpoints
{
    /// <summary>The body of <c>POST /api/generate</c> (the options of <c>ctcal-host generate</c>; the image as base64 PNG).</summary>
    internal sealed record GenerateBody(
        string? Model, string? Prompt, string? NegativePrompt, int? Width, int? Height, int? Steps, double? Guidance,
        string? Scheduler, long? Seed, int? Count, double? Strength, string? InitImage);

    public static void Map(WebApplication app, WebState state)
    {
        app.MapPost("/api/generate", (HttpContext ctx) => WebServer.WithBodyAsync<GenerateBody>(ctx, async body =>
        {
            var request = ToRequest(body);
            GenerationRules.Validate(request);
            string modelId = RequestModelId.IdOf(request.Model); // without the plugin's per-request options ("?stepCache=N")
            var generator = await HostCommands.FindGeneratorAsync(state.Plugins.Generators, modelId, ctx.RequestAborted)
                ?? throw new InputException("model", $"No loaded plugin has a model '{modelId}'");
            var summary = request with { InitImage = null };
            var job = state.Jobs.Start("generate", summary, async job =>
            {
                var progress = new SynchronousProgress<GenerationProgress>(p =>
                    job.Publish("progress", new { stage = p.Stage.ToString(), image = p.ImageIndex, count = p.ImageCount, p.Step, total = p.TotalSteps }));
                GenerationResult result;
                try
                {
                    result = await generator.Value.GenerateAsync(request, progress, job.Token);
                }
                catch (Exception ex) when (ex is not (OperationCanceledException or ArgumentException or OutOfMemoryException or GenerationOutOfMemoryException))
                {
                    throw new PluginCallException(generator.PluginId, "generate", ex);
                }

                var items = new List<GalleryItem>();
                foreach (var image in result.Images)
                {
                    var item = state.Gallery.Add(result, image);
                    items.Add(item);
                    job.Publish("image", item);
                }

                return new { images = items, result.Warnings, provider = result.ExecutionProvider, result.Parameters };
            });
            return Results.Json(new { id = job.Id }, WebServer.Json, statusCode: StatusCodes.Status202Accepted);
        }));

        app.MapGet("/api/gallery", () => Results.Json(state.Gallery.List(), WebServer.Json));
        app.MapGet("/gallery/{file}", (string file) =>
            state.Gallery.PathOf(file) is { } path ? Results.File(path, "image/png") : WebServer.Error(StatusCodes.Status404NotFound, "file", $"No gallery image '{file}'"));
    }

    /// <summary>The contract's request for <paramref name="body"/>, with the CLI's defaults for what it leaves out.</summary>
    internal static GenerationRequest ToRequest(GenerateBody body)
    {
        byte[]? init = null;
        if (!string.IsNullOrEmpty(body.InitImage))
        {
            string data = body.InitImage;
            int comma = data.StartsWith("data:", StringComparison.Ordinal) ? data.IndexOf(',', StringComparison.Ordinal) : -1;
            try
            {
                init = Convert.FromBase64String(data[(comma + 1)..]);
            }
            catch (FormatException)
            {
                throw new InputException("initImage", "initImage must be a PNG file as base64 (or a data: URL)");
            }

            if (!init.AsSpan().StartsWith(PngChunk.Signature))
            {
                throw new InputException("initImage", "initImage is not a PNG file");
            }
        }

        return new GenerationRequest
        {
            Model = body.Model ?? "",
            Prompt = body.Prompt ?? "",
            NegativePrompt = body.NegativePrompt ?? "",
            Width = body.Width,
            Height = body.Height,
            Steps = body.Steps ?? 25,
            GuidanceScale = body.Guidance ?? 7.5,
            Seed = body.Seed,
            BatchCount = body.Count ?? 1,
            Scheduler = string.IsNullOrWhiteSpace(body.Scheduler) ? null : body.Scheduler,
            InitImage = init,
            Strength = body.Strength ?? 0.75,
        };
    }
}

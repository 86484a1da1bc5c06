using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using CTCal.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CTCal.Host.Web;

/// <summary>
/// <c>ctcal-host serve</c>: Kestrel on one address, the embedded pages, and the JSON + server-sent-event API over the
/// loaded plugins, which it uses only through the contracts (<c>IImageGenerator</c>, <c>IModelExporter</c>,
/// <c>IFineTuner</c>), as any third-party host would. Every POST must be JSON (so a page of another origin cannot send one
/// without a CORS preflight, which is never answered); on loopback without a token the Host header must name loopback
/// (no DNS rebinding); with a token every request must carry it.
/// </summary>
public sealed class WebServer : IAsyncDisposable
{
    /// <summary>Options for every JSON body and answer.</summary>
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly WebApplication _app;

    private WebServer(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>The address the server listens on (the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>
    /// Checks <paramref name="options"/> (throws <see cref="ArgumentException"/> before binding), then starts listening.
    /// The plugins stay owned by the caller.
    /// </summary>
    public static async Task<WebServer> StartAsync(WebOptions options, PluginHost plugins, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        IPAddress address = options.Check();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(address, options.Port));

        // Open event streams of running jobs would hold a graceful stop for its default 30 s; a stopping server ends them.
        builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(2));
        var app = builder.Build();

        var state = new WebState(plugins, new Gallery(options.OutputFolder), new JobRegistry());
        app.Use(Guard(options, IPAddress.IsLoopback(address)));
        MapPages(app);
        ModelEndpoints.Map(app, state);
        GenerateEndpoints.Map(app, state);
        FineTuneEndpoints.Map(app, state);
        MapJobs(app, state);

        await app.StartAsync(ct);
        string bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new WebServer(app, new Uri(bound.Replace("[::]", "localhost", StringComparison.Ordinal) + "/"));
    }

    /// <summary>Stops accepting requests and ends the open event streams.</summary>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static Func<HttpContext, RequestDelegate, Task> Guard(WebOptions options, bool loopback)
    {
        byte[]? token = options.Token is null ? null : Encoding.UTF8.GetBytes(options.Token);
        return async (ctx, next) =>
        {
            if (token is not null)
            {
                string given = ctx.Request.Headers["X-CTCal-Token"].FirstOrDefault() ?? ctx.Request.Query["token"].FirstOrDefault() ?? "";
                if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), token))
                {
                    await Error(StatusCodes.Status401Unauthorized, "token", "This server needs its token: open the page as /?token=... or send the X-CTCal-Token header").ExecuteAsync(ctx);
                    return;
                }
            }
            else if (loopback && ctx.Request.Host.Host is not ("localhost" or "127.0.0.1" or "[::1]" or "::1"))
            {
                await Error(StatusCodes.Status403Forbidden, "host", $"Host '{ctx.Request.Host.Host}' is not loopback; this server answers requests for localhost only").ExecuteAsync(ctx);
                return;
            }

            if (HttpMethods.IsPost(ctx.Request.Method) && ctx.Request.ContentType?.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) != true)
            {
                await Error(StatusCodes.Status415UnsupportedMediaType, "content-type", "POST bodies must be application/json").ExecuteAsync(ctx);
                return;
            }

            await next(ctx);
        };
    }

    private static void MapPages(WebApplication app)
    {
        app.MapGet("/", () => Asset("index.html"));
        app.MapGet("/assets/{name}", (string name) => Asset(name));
    }

    private static IResult Asset(string name) =>
        StaticAssets.Find(name) is var (bytes, type) ? Results.Bytes(bytes, type) : Results.NotFound();

    private static void MapJobs(WebApplication app, WebState state)
    {
        app.MapGet("/api/jobs", (string? kind) =>
            Results.Json((kind is null ? state.Jobs.OfKind("generate").Concat(state.Jobs.OfKind("finetune")).Concat(state.Jobs.OfKind("export")) : state.Jobs.OfKind(kind))
                .Select(j => new { j.Id, j.Kind, State = j.State.ToString().ToLowerInvariant(), j.Error, j.Request }), Json));

        app.MapGet("/api/jobs/{id}/events", async (string id, HttpContext ctx) =>
        {
            var job = state.Jobs.Find(id);
            if (job is null)
            {
                await Error(StatusCodes.Status404NotFound, "id", $"No job '{id}'").ExecuteAsync(ctx);
                return;
            }

            ctx.Response.ContentType = "text/event-stream";
            ctx.Response.Headers.CacheControl = "no-cache";
            try
            {
                await foreach (var e in job.EventsAsync(ctx.RequestAborted))
                {
                    await ctx.Response.WriteAsync($"event: {e.Type}\ndata: {e.Json}\n\n", ctx.RequestAborted);
                    await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
                }
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // The page closed the stream.
            }
        });

        app.MapPost("/api/jobs/{id}/cancel", (string id) =>
        {
            var job = state.Jobs.Find(id);
            if (job is null)
            {
                return Error(StatusCodes.Status404NotFound, "id", $"No job '{id}'");
            }

            job.Cancel();
            return Results.Json(new { job.Id, State = job.State.ToString().ToLowerInvariant() }, Json, statusCode: StatusCodes.Status202Accepted);
        });
    }

    /// <summary>An error answer: <c>{"error": message, "field": field}</c>.</summary>
    internal static IResult Error(int status, string field, string message) =>
        Results.Json(new { error = message, field }, Json, statusCode: status);

    /// <summary>
    /// Reads a JSON body as <typeparamref name="T"/> and writes <paramref name="handle"/>'s answer, or a 400 naming the field that could not be read;
    /// an <see cref="Cli.InputException"/> it throws is a 400 naming its fields.
    /// </summary>
    internal static Task WithBody<T>(HttpContext ctx, Func<T, IResult> handle)
        where T : class => WithBodyAsync<T>(ctx, body => Task.FromResult(handle(body)));

    /// <inheritdoc cref="WithBody{T}(HttpContext, Func{T, IResult})"/>
    internal static async Task WithBodyAsync<T>(HttpContext ctx, Func<T, Task<IResult>> handle)
        where T : class
    {
        IResult result;
        try
        {
            var body = await JsonSerializer.DeserializeAsync<T>(ctx.Request.Body, Json, ctx.RequestAborted);
            result = body is null
                ? Error(StatusCodes.Status400BadRequest, "body", "The body must be a JSON object")
                : await handle(body);
        }
        catch (JsonException ex)
        {
            string field = ex.Path is { Length: > 2 } path ? path.TrimStart('$', '.') : "body";
            result = Error(StatusCodes.Status400BadRequest, field, $"{field}: {ex.Message.Split(" Path:")[0]}");
        }
        catch (Cli.InputException ex)
        {
            result = Results.Json(new { error = ex.Message, field = ex.Problems[0].Field, problems = ex.Problems }, Json, statusCode: StatusCodes.Status400BadRequest);
        }

        await result.ExecuteAsync(ctx);
    }
}

/// <summary>What the endpoints share: the loaded plugins, the gallery and the jobs.</summary>
internal sealed record WebState(PluginHost Plugins, Gallery Gallery, JobRegistry Jobs);

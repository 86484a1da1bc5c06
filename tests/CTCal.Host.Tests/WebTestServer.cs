using System.Net.Http.Json;
using System.Text.Json;
using CTCal.Host.Web;
using CTCal.Hosting;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// <c>ctcal-host serve</c>'s server started in the test process on 127.0.0.1 with a free port, over a host root laid out
/// by <see cref="PluginFolders"/> (the plugin copied from its build output) with the hand-made tiny ONNX model
/// <c>tiny</c>; an <see cref="HttpClient"/> for it, and a reader of a job's server-sent events.
/// </summary>
internal sealed class WebTestServer : IAsyncDisposable
{
    /// <summary>Guards against a hang only; nothing is asserted about how long anything takes.</summary>
    private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(2);

    private readonly PluginHost _plugins;
    private readonly WebServer _server;

    private WebTestServer(string root, PluginHost plugins, WebServer server, HttpClient client)
    {
        Root = root;
        _plugins = plugins;
        _server = server;
        Client = client;
    }

    public string Root { get; }

    public HttpClient Client { get; }

    public Uri Address => _server.Address;

    /// <summary>
    /// Starts a server whose plugins.json has the onnx plugin (with <paramref name="settings"/>, or the default ones) plus
    /// <paramref name="moreEntries"/>.
    /// </summary>
    public static async Task<WebTestServer> StartAsync(string root, string? token = null, object? settings = null, params object[] moreEntries)
    {
        PluginFolders.CopyPlugin(root, "onnx");
        TinySdModel.Create(Path.Combine(root, "models"), "tiny");
        string file = PluginFolders.WritePluginsJson(root, [PluginFolders.Entry("ctcal.onnx", "onnx", settings), .. moreEntries]);
        var log = new RecordingLog();
        var plugins = PluginHost.Load(PluginsFile.Load(file), log, _ => log);
        var server = await WebServer.StartAsync(new WebOptions("127.0.0.1", 0, Path.Combine(root, "gallery"), Token: token), plugins, CancellationToken.None);
        return new WebTestServer(root, plugins, server, new HttpClient { BaseAddress = server.Address, Timeout = HangGuard });
    }

    public Task<HttpResponseMessage> PostAsync(string path, object body) => Client.PostAsJsonAsync(path, body);

    /// <summary>
    /// The events of job <paramref name="id"/> up to its last one, as (type, data) pairs; <paramref name="onEvent"/> sees
    /// each as it arrives.
    /// </summary>
    public async Task<List<(string Type, JsonElement Data)>> EventsAsync(string id, Action<string, JsonElement>? onEvent = null)
    {
        using var guard = new CancellationTokenSource(HangGuard);
        using var response = await Client.GetAsync($"api/jobs/{id}/events", HttpCompletionOption.ResponseHeadersRead, guard.Token);
        response.EnsureSuccessStatusCode();
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(guard.Token));
        var events = new List<(string, JsonElement)>();
        string? type = null;
        while (await reader.ReadLineAsync(guard.Token) is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal))
            {
                type = line["event: ".Length..];
            }
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                var data = JsonDocument.Parse(line["data: ".Length..]).RootElement.Clone();
                events.Add((type!, data));
                onEvent?.Invoke(type!, data);
            }
        }

        return events;
    }

    /// <summary>Starts a job with a POST to <paramref name="path"/> and returns its id (asserting 202).</summary>
    public async Task<string> StartJobAsync(string path, object body)
    {
        using var response = await PostAsync(path, body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Accepted, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>Starts a generation and returns its job id (asserting 202).</summary>
    public Task<string> StartGenerationAsync(object body) => StartJobAsync("api/generate", body);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _server.DisposeAsync();
        _plugins.Dispose();
    }
}

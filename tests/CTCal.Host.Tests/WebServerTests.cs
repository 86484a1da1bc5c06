using System.Net;
using System.Text.Json;
using CTCal.Contracts;
using CTCal.Host.Cli;
using CTCal.Host.Web;
using CTCal.Tests;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// <c>ctcal-host serve</c>'s server over real Kestrel on loopback: input checks (the CLI's rules, 400 naming the field),
/// loopback-only binding, the token, concurrent generations with their event streams, and a broken plugin beside a
/// working one.
/// </summary>
public sealed class WebServerTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-web");

    public void Dispose() => Directory.Delete(_root, true);

    private static object Request(long seed, int steps = 3) => new { model = "tiny", prompt = "a red cube", width = 64, height = 64, steps, seed, scheduler = "euler_a" };

    [Theory]
    [InlineData("steps", 0, "--steps", "0")]
    [InlineData("steps", 1001, "--steps", "1001")]
    [InlineData("width", 63, "--width", "63")]
    [InlineData("height", 0, "--height", "0")]
    [InlineData("guidance", -1.0, "--guidance", "-1")]
    [InlineData("seed", -5L, "--seed", "-5")]
    [InlineData("count", 0, "--count", "0")]
    [InlineData("scheduler", "euler a!", "--scheduler", "euler a!")]
    [InlineData("model", "../etc", "--model", "../etc")]
    [InlineData("model", "../etc?stepCache=2", "--model", "../etc?stepCache=2")] // the id part is checked, options or not
    [InlineData("strength", 1.5, "--strength", "1.5")]
    public async Task BadGenerationInputIsA400NamingTheFieldAsTheCliRefusesIt(string field, object value, string option, string cliValue)
    {
        await using var server = await WebTestServer.StartAsync(_root);
        var body = new Dictionary<string, object> { ["model"] = "tiny", ["prompt"] = "a red cube", [field] = value };
        using var response = await server.PostAsync("api/generate", body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var answer = JsonDocument.Parse(text).RootElement;
        Assert.Equal(field, answer.GetProperty("field").GetString());
        Assert.Contains(char.ToUpperInvariant(field[0]) + field[1..], answer.GetProperty("error").GetString());

        // The CLI refuses the same value with the same message (exit code 2), before any plugin loads.
        var output = new StringWriter();
        var log = new RecordingLog();
        string[] args = ["generate", "--config", Path.Combine(_root, "plugins.json"), "--model", "tiny", "--prompt", "a red cube", option, cliValue];
        if (option == "--model")
        {
            args[4] = cliValue;
            args = args[..^2];
        }

        int code = HostCommands.Build(output, log, _ => log).Parse(args).Invoke(new System.CommandLine.InvocationConfiguration { Output = output, Error = output });
        Assert.Equal(2, code);
        Assert.Contains(answer.GetProperty("error").GetString()!, output.ToString());
    }

    [Fact]
    public async Task UnknownModelUnreadableJsonAndBadFineTuneInputAre400sNamingTheField()
    {
        await using var server = await WebTestServer.StartAsync(_root);
        async Task<string> FieldOf(string path, object body)
        {
            using var response = await server.PostAsync(path, body);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("field").GetString()!;
        }

        Assert.Equal("model", await FieldOf("api/generate", new { model = "nope", prompt = "x" }));
        Assert.Equal("steps", await FieldOf("api/generate", new { model = "tiny", prompt = "x", steps = "many" }));
        string data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        string baseModel = Path.Combine(TestPaths.Fixtures, "tiny-sd1");
        Assert.Equal("loraRank", await FieldOf("api/finetune", new { baseModel, data, output = Path.Combine(_root, "run"), modelId = "t", loraRank = 0 }));
        Assert.Equal("method", await FieldOf("api/finetune", new { baseModel, data, output = Path.Combine(_root, "run"), modelId = "t", method = "magic" }));
        Assert.Equal("resolution", await FieldOf("api/finetune", new { baseModel, data, output = Path.Combine(_root, "run"), modelId = "t", resolution = 4 }));
        Assert.Equal("resolution", await FieldOf("api/finetune", new { baseModel, data, output = Path.Combine(_root, "run"), modelId = "t", resolution = "small" }));
        Assert.Equal("data", await FieldOf("api/finetune", new { baseModel, data = Path.Combine(_root, "missing"), output = Path.Combine(_root, "run"), modelId = "t" }));
        Assert.Equal("modelId", await FieldOf("api/export", new { source = baseModel, modelId = "../x" }));
        Assert.Equal("source", await FieldOf("api/export", new { source = Path.Combine(_root, "missing"), modelId = "x" }));

        // A POST that is not JSON (a form another site could send without a preflight) is refused.
        using var form = await server.Client.PostAsync("api/generate", new StringContent("model=tiny", System.Text.Encoding.UTF8, "application/x-www-form-urlencoded"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, form.StatusCode);
    }

    [Fact]
    public void TheFineTuneFormsResolutionAndRankBecomeTheTrainerJobsAndTheDefaultsStayOtherwise()
    {
        string data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        string baseModel = Path.Combine(TestPaths.Fixtures, "tiny-sd1");
        var body = new FineTuneEndpoints.FineTuneBody(baseModel, data, Path.Combine(_root, "run"), "t", "vanilla", 3, 8, 64, false);
        var job = FineTuneEndpoints.ToRequest(body).Job;
        Assert.Equal((64, 8, 3, "vanilla"), (job.Resolution, job.LoraRank, job.Steps, job.Method));

        var defaults = FineTuneEndpoints.ToRequest(body with { Method = null, Steps = null, LoraRank = null, Resolution = null }).Job;
        var d = FineTuneJob.Defaults;
        Assert.Equal((d.Resolution, d.LoraRank, d.Steps, d.Method), (defaults.Resolution, defaults.LoraRank, defaults.Steps, defaults.Method));
    }

    [Fact]
    public async Task TwoConcurrentGenerationsFromTwoStreamsBothCompleteWithTheirParametersInThePng()
    {
        await using var server = await WebTestServer.StartAsync(_root);
        string first = await server.StartGenerationAsync(Request(11, steps: 6));
        string second = await server.StartGenerationAsync(Request(12, steps: 6));
        var streams = await Task.WhenAll(server.EventsAsync(first), server.EventsAsync(second));

        foreach (var (events, seed) in streams.Zip(new[] { 11L, 12L }))
        {
            Assert.Equal("done", events[^1].Type);
            var steps = events.Where(e => e.Type == "progress" && e.Data.GetProperty("stage").GetString() == "Denoising").Select(e => e.Data.GetProperty("step").GetInt32()).ToList();
            Assert.Equal(6, steps.Max());
            var image = Assert.Single(events, e => e.Type == "image").Data;
            Assert.Equal(seed, image.GetProperty("seed").GetInt64());

            // The stored PNG carries the A1111-style parameters; the gallery serves it.
            byte[] png = await server.Client.GetByteArrayAsync("gallery/" + image.GetProperty("file").GetString());
            var parameters = Assert.Single(PngText.Read(png), t => t.Key == "parameters").Value;
            Assert.Equal($"a red cube\nSteps: 6, Sampler: euler_a, CFG scale: 7.5, Seed: {seed}, Size: 64x64, Model: tiny", parameters);
        }

        using var gallery = JsonDocument.Parse(await server.Client.GetStringAsync("api/gallery"));
        Assert.Equal(2, gallery.RootElement.GetArrayLength());
        Assert.NotEqual(
            await File.ReadAllBytesAsync(Path.Combine(_root, "gallery", gallery.RootElement[0].GetProperty("file").GetString()!)),
            await File.ReadAllBytesAsync(Path.Combine(_root, "gallery", gallery.RootElement[1].GetProperty("file").GetString()!)));
    }

    [Fact]
    public async Task CancelStopsAGenerationAndItsStreamEndsCancelled()
    {
        await using var server = await WebTestServer.StartAsync(_root);
        string id = await server.StartGenerationAsync(new { model = "tiny", prompt = "x", width = 64, height = 64, steps = 1000, count = 64, seed = 1 });
        using (var cancel = await server.PostAsync($"api/jobs/{id}/cancel", new { }))
        {
            Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        }

        var events = await server.EventsAsync(id);
        Assert.Equal("cancelled", events[^1].Type);
        Assert.DoesNotContain(events, e => e.Type == "image" && e.Data.GetProperty("parameters").GetProperty("seed").GetInt64() == 64);
    }

    [Fact]
    public async Task ABrokenPluginLeavesTheOthersModelsListedAndItsErrorShown()
    {
        await using var server = await WebTestServer.StartAsync(_root, moreEntries: PluginFolders.Entry("broken", "nothing-here"));
        using var answer = JsonDocument.Parse(await server.Client.GetStringAsync("api/models"));
        var model = Assert.Single(answer.RootElement.GetProperty("models").EnumerateArray());
        Assert.Equal("tiny", model.GetProperty("id").GetString());
        Assert.Equal("ctcal.onnx", model.GetProperty("plugin").GetString());
        var error = Assert.Single(answer.RootElement.GetProperty("errors").EnumerateArray());
        Assert.Equal("broken", error.GetProperty("plugin").GetString());
        Assert.Contains("nothing-here", error.GetProperty("message").GetString());

        // The page itself is served from the assembly.
        string html = await server.Client.GetStringAsync("/");
        Assert.Contains("plugin-errors", html);
        Assert.Contains("EventSource", await server.Client.GetStringAsync("assets/app.js"));
    }

    [SkippableFact]
    public async Task AFineTuneCancelledMidwayResumesToDoneAndExportsWithOneClick()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");

        // The first run stops after step 3 until it is cancelled; a resumed run (resume: latest) goes on from step 4.
        StandInTrainer.Write(Path.Combine(_root, "tools", "ctcal-train"), """
            first=1; grep -q '"resume": "latest"' "$cfg" && first=4
            echo '{"event":"start","totalSteps":6,"method":"ctcal"}'
            for i in $(seq $first 6); do
              echo "{\"event\":\"step\",\"step\":$i,\"totalSteps\":6,\"loss\":0.$((9 - i))}"
              [ $first -eq 1 ] && [ $i -eq 3 ] && sleep 120
            done
            mkdir -p "$out/unet" && cp "$base/unet/diffusion_pytorch_model.safetensors" "$out/unet/"
            echo "{\"event\":\"done\",\"steps\":6,\"final_weights\":\"$out/unet/diffusion_pytorch_model.safetensors\",\"cancelled\":false,\"exit_code\":0}"
            """);
        await using var server = await WebTestServer.StartAsync(_root, settings: new { modelsFolder = "models", trainerPath = "tools/ctcal-train", executionProviders = new[] { "cpu" } });
        var body = new
        {
            baseModel = Path.Combine(TestPaths.Fixtures, "tiny-sd1"),
            data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName,
            output = Path.Combine(_root, "run"),
            modelId = "tuned",
            steps = 6,
            resume = false,
        };

        string first = await server.StartJobAsync("api/finetune", body);
        var cancelled = await server.EventsAsync(first, (type, data) =>
        {
            if (type == "progress" && data.GetProperty("stage").GetString() == "step" && data.GetProperty("current").GetInt64() == 3)
            {
                server.PostAsync($"api/jobs/{first}/cancel", new { }).Wait();
            }
        });
        Assert.Equal("cancelled", cancelled[^1].Type);

        string resumed = await server.StartJobAsync("api/finetune", body with { resume = true });
        var events = await server.EventsAsync(resumed);
        Assert.Equal("done", events[^1].Type);
        var steps = events.Where(e => e.Type == "progress" && e.Data.GetProperty("stage").GetString() == "step").ToList();
        Assert.Equal([4L, 5L, 6L], steps.Select(e => e.Data.GetProperty("current").GetInt64()));
        Assert.Equal(0.3, steps[^1].Data.GetProperty("metrics").GetProperty("loss").GetDouble(), 6);
        Assert.Equal("tuned", events[^1].Data.GetProperty("model").GetProperty("id").GetString());

        using (var jobs = JsonDocument.Parse(await server.Client.GetStringAsync("api/jobs?kind=finetune")))
        {
            Assert.Equal(["cancelled", "done"], jobs.RootElement.EnumerateArray().Select(j => j.GetProperty("state").GetString()));
        }

        // The cancelled fine-tune cannot be exported; the finished one can, with its method recorded.
        using (var refused = await server.PostAsync($"api/finetunes/{first}/export", new { modelId = "nope" }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        }

        string export = await server.StartJobAsync($"api/finetunes/{resumed}/export", new { modelId = "tuned-copy" });
        var exported = await server.EventsAsync(export);
        Assert.Equal("done", exported[^1].Type);
        using var models = JsonDocument.Parse(await server.Client.GetStringAsync("api/models"));
        var copy = Assert.Single(models.RootElement.GetProperty("models").EnumerateArray(), m => m.GetProperty("id").GetString() == "tuned-copy");
        Assert.Equal("ctcal", copy.GetProperty("method").GetString());
        Assert.EndsWith(Path.Combine("run", "unet", "diffusion_pytorch_model.safetensors"), copy.GetProperty("provenance").GetProperty("unetWeights").GetString());
        // The one-click export's graphs as the plugin chose them (exportOptimize auto on the CPU provider: the cpu profile).
        Assert.Equal("cpu", copy.GetProperty("provenance").GetProperty("optimize").GetString());
        Assert.Equal("fp32", copy.GetProperty("provenance").GetProperty("precision").GetString());
        Assert.Equal(JsonValueKind.Null, copy.GetProperty("provenance").GetProperty("stepCacheBranch").ValueKind);
    }

    [Theory]
    [InlineData("0.0.0.0", false, null, "is not a loopback address")]
    [InlineData("192.168.1.20", false, null, "is not a loopback address")]
    [InlineData("::", true, null, "needs --token")]
    [InlineData("example.org", false, null, "is not an IP address")]
    [InlineData("127.0.0.1", false, "short", "at least 16 characters")]
    public void ServeRefusesAnythingButLoopbackWithoutAllowRemoteAndTokenBeforeBinding(string bind, bool allowRemote, string? token, string message)
    {
        var output = new StringWriter();
        var log = new RecordingLog();
        var args = new List<string> { "serve", "--config", Path.Combine(_root, "no-such-plugins.json"), "--bind", bind, "--port", "0", "--out", Path.Combine(_root, "gallery") };
        if (allowRemote)
        {
            args.Add("--allow-remote");
        }

        if (token is not null)
        {
            args.AddRange(["--token", token]);
        }

        int code = HostCommands.Build(output, log, _ => log).Parse(args).Invoke(new System.CommandLine.InvocationConfiguration { Output = output, Error = output });
        Assert.Equal(2, code);
        Assert.Contains(message, output.ToString());
        Assert.DoesNotContain("listening", output.ToString());
        Assert.False(Directory.Exists(Path.Combine(_root, "gallery")));
    }

    [Fact]
    public async Task WithATokenEveryRequestNeedsIt()
    {
        const string token = "0123456789abcdef-secret";
        await using var server = await WebTestServer.StartAsync(_root, token);
        using (var without = await server.Client.GetAsync("api/models"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, without.StatusCode);
        }

        using (var wrong = await server.Client.GetAsync("api/models?token=0123456789abcdef-wrong!"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        }

        using (var query = await server.Client.GetAsync($"api/models?token={token}"))
        {
            Assert.Equal(HttpStatusCode.OK, query.StatusCode);
        }

        server.Client.DefaultRequestHeaders.Add("X-CTCal-Token", token);
        using var header = await server.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, header.StatusCode);
    }

    [Fact]
    public async Task WithoutATokenOnlyLoopbackHostNamesAreAnswered()
    {
        await using var server = await WebTestServer.StartAsync(_root);
        using var request = new HttpRequestMessage(HttpMethod.Get, "api/models");
        request.Headers.Host = "attacker.example";
        using var rebound = await server.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.Forbidden, rebound.StatusCode);
        Assert.Equal(IPAddress.Loopback.ToString(), server.Address.Host);
    }
}

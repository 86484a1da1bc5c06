using CTCal.Contracts;
using CTCal.Core.Threading;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>End to end on hand-made tiny ONNX models: tokenizer, text encoder, sampler loop with guidance, VAE, PNG.</summary>
public sealed class GenerationTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-gen");
    private readonly List<PluginRuntime> _runtimes = new();

    public void Dispose()
    {
        foreach (var r in _runtimes)
        {
            r.Dispose();
        }

        Directory.Delete(_root, true);
    }

    private string Models => Path.Combine(_root, "models");

    private (OnnxImageGenerator Generator, PluginRuntime Runtime, RecordingLog Log) Create(
        IReadOnlyList<ExecutionProviderKind>? providers = null, MemoryMode memory = MemoryMode.Balanced)
    {
        var log = new RecordingLog();
        var settings = new PluginSettings
        {
            ModelsFolder = Models,
            ExecutionProviders = providers ?? new[] { ExecutionProviderKind.Cpu },
            IntraOpThreads = 1,
            InterOpThreads = 1,
            MemoryMode = memory,
        };
        var runtime = new PluginRuntime(settings, log);
        _runtimes.Add(runtime);
        return (new OnnxImageGenerator(runtime), runtime, log);
    }

    private static GenerationRequest Request(string model = "tiny", long seed = 7, int count = 1, string? scheduler = "euler_a") => new()
    {
        Model = model,
        Prompt = "a red cube on top of a blue sphere",
        NegativePrompt = "blurry",
        Width = 64,
        Height = 48,
        Steps = 4,
        GuidanceScale = 7.5,
        Seed = seed,
        BatchCount = count,
        Scheduler = scheduler,
    };

    [Fact]
    public async Task GeneratesPngsWithParametersInTextChunks()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        var progress = new List<GenerationProgress>();
        var result = await generator.GenerateAsync(Request(count: 2), new SynchronousProgress<GenerationProgress>(progress.Add));

        Assert.Equal("CPU", result.ExecutionProvider);
        Assert.Equal(2, result.Images.Count);
        Assert.Equal(new[] { 7L, 8L }, result.Images.Select(i => i.Seed));
        Assert.Equal(new GenerationParameters("tiny", "a red cube on top of a blue sphere", "blurry", 64, 48, 4, 7.5, 7, 2, "euler_a"), result.Parameters);
        var png = PngReader.Read(result.Images[1].Png);
        Assert.Equal((64, 48), (png.Width, png.Height));
        Assert.Equal("a red cube on top of a blue sphere", png.Text["prompt"]);
        Assert.Equal("blurry", png.Text["negative_prompt"]);
        Assert.Equal("8", png.Text["seed"]);
        Assert.Equal("4", png.Text["steps"]);
        Assert.Equal("7.5", png.Text["guidance_scale"]);
        Assert.Equal("euler_a", png.Text["scheduler"]);
        Assert.Equal("tiny", png.Text["model"]);
        Assert.Equal("64x48", png.Text["size"]);
        Assert.True(png.Rgb.Distinct().Count() > 10, "image is flat");
        Assert.NotEqual(result.Images[0].Png, result.Images[1].Png);
        Assert.Equal(8, progress.Count(p => p.Stage == GenerationStage.Denoising));
        Assert.Equal(GenerationStage.Done, progress[^1].Stage);
    }

    [Fact]
    public async Task AnImageIsTheSameAloneAndAnywhereInABatch()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        var batch = await generator.GenerateAsync(Request(seed: 100, count: 3));
        var alone = await generator.GenerateAsync(Request(seed: 102));
        Assert.Equal(alone.Images[0].Png, batch.Images[2].Png);
        var again = await generator.GenerateAsync(Request(seed: 100, count: 3));
        Assert.Equal(batch.Images.Select(i => i.Png), again.Images.Select(i => i.Png));
    }

    [Fact]
    public async Task EightConcurrentRequestsMatchSequentialOnes()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        var requests = Enumerable.Range(0, 8).Select(i => Request(seed: 1000 + i, scheduler: i % 2 == 0 ? "euler_a" : "dpmpp_2m")).ToArray();
        var sequential = new List<byte[]>();
        foreach (var r in requests)
        {
            sequential.Add((await generator.GenerateAsync(r)).Images[0].Png);
        }

        var concurrent = await Task.WhenAll(requests.Select(r => Task.Run(() => generator.GenerateAsync(r))));
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(sequential[i], concurrent[i].Images[0].Png);
        }
    }

    [Theory]
    [InlineData(false, TinySdModel.TimestepKind.Int64Batch)]
    [InlineData(true, TinySdModel.TimestepKind.FloatOne)]
    [InlineData(true, TinySdModel.TimestepKind.FloatScalar)]
    public async Task RunsEveryExporterConvention(bool int32Ids, TinySdModel.TimestepKind timestep)
    {
        TinySdModel.Create(Models, "tiny", int32Ids, timestep);
        var (generator, _, _) = Create();
        foreach (string scheduler in new[] { "ddim", "euler", "pndm", "lms", "dpmpp_2m_karras", "ddpm" })
        {
            var result = await generator.GenerateAsync(Request(scheduler: scheduler));
            Assert.Single(result.Images);
        }
    }

    [Fact]
    public async Task FixedBatchAndSequenceExportsSplitGuidanceAndTruncateLongPrompts()
    {
        TinySdModel.Create(Models, "dynamic");
        TinySdModel.Create(Models, "fixed", fixedShapes: true);
        var (generator, _, _) = Create();
        var dynamicResult = await generator.GenerateAsync(Request(model: "dynamic"));
        var fixedResult = await generator.GenerateAsync(Request(model: "fixed"));
        Assert.Equal(PngReader.Read(dynamicResult.Images[0].Png).Rgb, PngReader.Read(fixedResult.Images[0].Png).Rgb);

        string longPrompt = string.Join(" ", Enumerable.Range(0, 40).Select(i => $"red cube {i}"));
        var truncated = await generator.GenerateAsync(Request(model: "fixed") with { Prompt = longPrompt });
        Assert.Contains(truncated.Warnings, w => w.Contains("truncated") && w.Contains("one 77-token window"));
    }

    [Fact]
    public async Task GuidanceOfOneIgnoresTheNegativePrompt()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        var a = await generator.GenerateAsync(Request() with { GuidanceScale = 1.0, NegativePrompt = "one thing" });
        var b = await generator.GenerateAsync(Request() with { GuidanceScale = 1.0, NegativePrompt = "something else entirely" });
        var c = await generator.GenerateAsync(Request() with { GuidanceScale = 5.0, NegativePrompt = "one thing" });
        var d = await generator.GenerateAsync(Request() with { GuidanceScale = 5.0, NegativePrompt = "something else entirely" });
        Assert.Equal(PngReader.Read(a.Images[0].Png).Rgb, PngReader.Read(b.Images[0].Png).Rgb);
        Assert.NotEqual(PngReader.Read(c.Images[0].Png).Rgb, PngReader.Read(d.Images[0].Png).Rgb);
    }

    [Fact]
    public async Task LowMemoryModeSplitsGuidanceButGivesTheSameImage()
    {
        TinySdModel.Create(Models, "tiny");
        var (batched, _, _) = Create();
        var (split, _, _) = Create(memory: MemoryMode.Low);
        var a = await batched.GenerateAsync(Request(seed: 3));
        var b = await split.GenerateAsync(Request(seed: 3));
        Assert.Equal(a.Images[0].Png, b.Images[0].Png);
    }

    [Fact]
    public async Task GpuProvidersRequestedFallBackToCpuWithAWarning()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, log) = Create(new[] { ExecutionProviderKind.DirectML, ExecutionProviderKind.Cuda, ExecutionProviderKind.Cpu });
        var result = await generator.GenerateAsync(Request());
        Assert.Equal("CPU", result.ExecutionProvider);
        Assert.Contains(result.Warnings, w => w.Contains("CUDA"));
        Assert.Contains(result.Warnings, w => w.Contains("DirectML"));
        Assert.Contains(log.Warnings, w => w.Contains("CUDA") && w.Contains("not available"));
    }

    [Fact]
    public async Task LongPromptsAreChunkedOrTruncatedWithAWarning()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        string longPrompt = string.Join(" ", Enumerable.Range(0, 40).Select(i => $"red cube {i}"));
        var chunked = await generator.GenerateAsync(Request() with { Prompt = longPrompt });
        var truncated = await generator.GenerateAsync(Request() with { Prompt = longPrompt, PromptOverflow = PromptOverflow.Truncate });
        Assert.DoesNotContain(chunked.Warnings, w => w.Contains("truncated"));
        Assert.Contains(truncated.Warnings, w => w.Contains("truncated"));
        Assert.NotEqual(chunked.Images[0].Png, truncated.Images[0].Png);
    }

    [Theory]
    [InlineData(65, 64, 4, 7.5, 1, "euler_a", "Width")]
    [InlineData(64, 0, 4, 7.5, 1, "euler_a", "Height")]
    [InlineData(64, 64, 0, 7.5, 1, "euler_a", "Steps")]
    [InlineData(64, 64, 4, double.NaN, 1, "euler_a", "GuidanceScale")]
    [InlineData(64, 64, 4, 7.5, 0, "euler_a", "BatchCount")]
    [InlineData(64, 64, 4, 7.5, 1, "heun9", "heun9")]
    public async Task InvalidRequestsNameTheField(int width, int height, int steps, double guidance, int count, string scheduler, string named)
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        var request = Request(count: count, scheduler: scheduler) with { Width = width, Height = height, Steps = steps, GuidanceScale = guidance };
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => generator.GenerateAsync(request));
        Assert.Contains(named, ex.Message);
    }

    [Fact]
    public async Task UnknownModelListsTheAvailableOnes()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(Request(model: "huge")));
        Assert.Contains("huge", ex.Message);
        Assert.Contains("tiny", ex.Message);
    }

    [Fact]
    public async Task ModelsCanBeUnloadedAndLoadAgain()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, runtime, _) = Create();
        var first = await generator.GenerateAsync(Request());
        Assert.True(runtime.IsLoaded("tiny"));
        var model = runtime.Catalog.Find("tiny");
        Assert.Same(runtime.GetSessions(model), runtime.GetSessions(model)); // created once, reused
        Assert.True(generator.UnloadModel("tiny"));
        Assert.False(runtime.IsLoaded("tiny"));
        Assert.False(generator.UnloadModel("tiny"));
        var second = await generator.GenerateAsync(Request());
        Assert.Equal(first.Images[0].Png, second.Images[0].Png);
    }

    [Fact]
    public async Task UnloadDuringGenerationWaitsForIt()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, runtime, _) = Create();
        var expected = (await generator.GenerateAsync(Request(seed: 9))).Images[0].Png;
        bool unloaded = false;
        var progress = new SynchronousProgress<GenerationProgress>(p =>
        {
            if (p.Stage == GenerationStage.Denoising && p.Step == 1 && !unloaded)
            {
                unloaded = runtime.Unload("tiny");
            }
        });
        var result = await generator.GenerateAsync(Request(seed: 9) with { Steps = 4 }, progress);
        Assert.True(unloaded);
        Assert.Equal(expected, result.Images[0].Png);
    }

    [Fact]
    public async Task CancellationStopsTheLoop()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        using var cts = new CancellationTokenSource();
        var progress = new SynchronousProgress<GenerationProgress>(p =>
        {
            if (p.Stage == GenerationStage.Denoising && p.Step == 2) cts.Cancel();
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateAsync(Request() with { Steps = 50 }, progress, cts.Token));
    }

    [Fact]
    public async Task CancellationReturnsBeforeTheNextStepAndLeavesTheModelUsable()
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, _) = Create();
        var reference = await generator.GenerateAsync(Request(seed: 3));

        using var cts = new CancellationTokenSource();
        int lastStep = 0;
        var progress = new SynchronousProgress<GenerationProgress>(p =>
        {
            if (p.Stage != GenerationStage.Denoising) return;
            lastStep = Math.Max(lastStep, p.Step);
            if (p.Step == 2) cts.Cancel();
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateAsync(Request() with { Steps = 200 }, progress, cts.Token));
        // Promptly: the loop stops at the step that saw the cancellation, not after the remaining 198.
        Assert.InRange(lastStep, 2, 3);

        // The model's sessions survive the cancellation and give the same image as before.
        var again = await generator.GenerateAsync(Request(seed: 3));
        Assert.Equal(reference.Images[0].Png, again.Images[0].Png);
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("empty")]
    [InlineData("garbage")]
    public async Task ABrokenModelOnnxGivesAnErrorForThatModelWhileOthersKeepServing(string damage)
    {
        TinySdModel.Create(Models, "tiny");
        string broken = TinySdModel.Create(Models, "broken");
        string unet = Path.Combine(broken, "unet", "model.onnx");
        byte[] bytes = File.ReadAllBytes(unet);
        File.WriteAllBytes(unet, damage switch
        {
            "truncated" => bytes[..(bytes.Length / 2)],
            "empty" => Array.Empty<byte>(),
            _ => Enumerable.Range(0, 4096).Select(i => (byte)(i * 7919 % 251)).ToArray(),
        });
        var (generator, _, _) = Create();

        var error = await Assert.ThrowsAnyAsync<Exception>(() => generator.GenerateAsync(Request(model: "broken")));
        Assert.IsNotType<NullReferenceException>(error);
        Assert.Contains("broken", error.Message);
        Assert.Contains("unet", error.Message); // names the component file at fault

        var ok = await generator.GenerateAsync(Request(model: "tiny"));
        Assert.Single(ok.Images);
        // The broken model keeps failing cleanly on a second request (no half-initialised state).
        await Assert.ThrowsAnyAsync<Exception>(() => generator.GenerateAsync(Request(model: "broken")));
    }

    [Fact]
    public async Task ListsModelsAndSkipsIncompleteFolders()
    {
        TinySdModel.Create(Models, "tiny");
        string broken = TinySdModel.Create(Models, "broken");
        File.Delete(Path.Combine(broken, "unet", "model.onnx"));
        Directory.CreateDirectory(Path.Combine(Models, "not-a-model"));
        var (generator, _, log) = Create();
        var models = await generator.ListModelsAsync();
        var model = Assert.Single(models);
        Assert.Equal(("tiny", "Tiny tiny", "sd1", 64, 64, false), (model.Id, model.Name, model.Family, model.DefaultWidth, model.DefaultHeight, model.HasVaeEncoder));
        Assert.Contains(log.Warnings, w => w.Contains("broken") && w.Contains("unet/model.onnx"));
    }
}

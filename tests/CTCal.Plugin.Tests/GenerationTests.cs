using CTCal.Contracts;
using CTCal.Core.Schedulers;
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
        IReadOnlyList<ExecutionProviderKind>? providers = null, MemoryMode memory = MemoryMode.Balanced, bool ioBinding = true, IReadOnlyList<string>? warmUp = null)
    {
        var log = new RecordingLog();
        var settings = new PluginSettings
        {
            ModelsFolder = Models,
            ExecutionProviders = providers ?? new[] { ExecutionProviderKind.Cpu },
            IntraOpThreads = 1,
            InterOpThreads = 1,
            MemoryMode = memory,
            IoBinding = ioBinding,
            WarmUpModels = warmUp ?? [],
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
    [InlineData(false, TinySdModel.TimestepKind.Int32Batch)]
    [InlineData(true, TinySdModel.TimestepKind.FloatOne)]
    [InlineData(true, TinySdModel.TimestepKind.FloatScalar)]
    public async Task RunsEveryExporterConvention(bool int32Ids, TinySdModel.TimestepKind timestep)
    {
        // Every image must be the one worked out from the tiny model's closed form (ExpectedTinyImage), with the timestep
        // rounded where the export declares an integer type: ids, timesteps and both guidance halves reach the models
        // as intended whatever the convention.
        string dir = TinySdModel.Create(Models, "tiny", int32Ids, timestep);
        // linspace spacing at 5 steps gives Euler and LMS fractional timesteps (249.75, 499.5, 749.25), which an integer
        // timestep input must receive rounded and a float one unchanged.
        string configPath = Path.Combine(dir, "scheduler", "scheduler_config.json");
        File.WriteAllText(configPath, File.ReadAllText(configPath).Replace("\"leading\"", "\"linspace\"", StringComparison.Ordinal));
        var (generator, _, _) = Create();
        var config = SchedulerConfig.Load(configPath);
        Assert.Equal("linspace", config.TimestepSpacing);
        foreach (string scheduler in new[] { "ddim", "euler", "pndm", "lms", "dpmpp_2m_karras", "ddpm" })
        {
            var request = Request(scheduler: scheduler) with { NegativePrompt = "two cats and three dogs", Steps = 5 };
            var result = await generator.GenerateAsync(request);
            var png = PngReader.Read(Assert.Single(result.Images).Png);
            Assert.Equal((64, 48), (png.Width, png.Height));
            double[] expected = ExpectedTinyImage(SchedulerFactory.Create(scheduler, config), request, timestep is TinySdModel.TimestepKind.Int64Batch or TinySdModel.TimestepKind.Int32Batch);
            Assert.True(expected.Count(v => v is > 0 and < 255) > expected.Length / 20, $"{scheduler}: the expected image is nearly all clamped");
            ClosedFormReference.AssertPixels(expected, png.Rgb);
        }
    }

    /// <summary>
    /// The image a correct pipeline makes with <see cref="TinySdModel"/> (UNet = 0.5 sample + mean(text) + 0.001 t + 0.05 cos(pi t), VAE =
    /// one ConvTranspose, default scaling_factor 0.18215), worked out here: the fixture's CLIP ids (openai/CLIP) for both
    /// prompts, x_T = init_noise_sigma * GaussianNoise(seed), eps = eps_neg + g (eps_text - eps_neg) on the scaled input,
    /// the sampler's step (the samplers are checked against diffusers in Core.Tests; DDPM and the ancestral noise draw
    /// from the same GaussianNoise after x_T), then decode(latents / 0.18215) mapped to bytes, returned unrounded.
    /// </summary>
    private static double[] ExpectedTinyImage(IDiffusionScheduler scheduler, GenerationRequest r, bool integerTimesteps)
    {
        var (embedding, kernel) = TinySdModel.Weights();
        double text = ClosedFormReference.TextMean(embedding, TinySdModel.Hidden, ClosedFormReference.Sd1InputIds(r.Prompt));
        double negative = ClosedFormReference.TextMean(embedding, TinySdModel.Hidden, ClosedFormReference.Sd1InputIds(r.NegativePrompt));
        int width = r.Width!.Value, height = r.Height!.Value, h = height / 8, w = width / 8;

        scheduler.SetTimesteps(r.Steps);
        var noise = new GaussianNoise(r.Seed!.Value);
        var latents = new float[4 * h * w];
        noise.NextGaussian(latents);
        for (int k = 0; k < latents.Length; k++)
        {
            latents[k] *= scheduler.InitNoiseSigma;
        }

        var input = new float[latents.Length];
        var eps = new float[latents.Length];
        foreach (double t in scheduler.Timesteps)
        {
            latents.CopyTo(input, 0);
            scheduler.ScaleModelInput(input, t);
            double seen = integerTimesteps ? Math.Round(t) : (float)t;
            for (int k = 0; k < eps.Length; k++)
            {
                eps[k] = (float)(0.5 * input[k] + negative + r.GuidanceScale * (text - negative) + 0.001 * seen + 0.05 * Math.Cos(Math.PI * seen));
            }

            scheduler.Step(eps, t, latents, noise);
        }

        double[] z = latents.Select(v => v / 0.18215).ToArray();
        double[] image = ClosedFormReference.Decode(z, h, w, kernel, new float[3]);
        return ClosedFormReference.ToPixelScale(image, width, height);
    }

    [Fact]
    public async Task Int32TimestepsAndFp16TensorsGiveTheImageOfTheInt64Fp32Model()
    {
        TinySdModel.Create(Models, "reference");
        TinySdModel.Create(Models, "int32", timestep: TinySdModel.TimestepKind.Int32Batch);
        TinySdModel.Create(Models, "fp16", fp16: true);
        var (generator, _, _) = Create();
        byte[] Rgb(GenerationResult r) => PngReader.Read(r.Images[0].Png).Rgb;
        foreach (string scheduler in new[] { "ddim", "euler_a" })
        {
            var reference = Rgb(await generator.GenerateAsync(Request(model: "reference", scheduler: scheduler)));
            Assert.True(reference.Distinct().Count() > 10, "image is flat");

            // The UNet adds 0.001 * t, so a timestep fed wrongly (not rounded the same way, or as 0) changes the image.
            Assert.Equal(reference, Rgb(await generator.GenerateAsync(Request(model: "int32", scheduler: scheduler))));

            // fp16 inputs and outputs round every tensor to 11 significant bits on the way (a relative error of 2^-11 per
            // rounding, compounded over the sampler's steps and guidance): the same image within a few levels of 255.
            var half = Rgb(await generator.GenerateAsync(Request(model: "fp16", scheduler: scheduler)));
            Assert.Equal(reference.Length, half.Length);
            var differences = reference.Zip(half, (a, b) => Math.Abs(a - b)).ToArray();
            Assert.True(differences.Max() <= 8 && differences.Average() <= 1,
                $"{scheduler}: fp16 image differs by up to {differences.Max()} levels, {differences.Average():F2} on average");
        }
    }

    [Fact]
    public void ANegativePromptIsPaddedWithEmptyChunksToThePromptsChunkCount()
    {
        TinySdModel.Create(Models, "tiny");
        var (_, runtime, _) = Create();
        var sessions = runtime.GetSessions(runtime.Catalog.Find("tiny"));
        string longPrompt = string.Join(" ", Enumerable.Range(0, 40).Select(i => $"red cube {i}"));
        int chunks = sessions.Tokenizer.EncodeChunks(longPrompt).Count;
        Assert.True(chunks >= 2, $"the prompt needs {chunks} chunk(s); the test needs several");

        using var run = new Microsoft.ML.OnnxRuntime.RunOptions();
        var text = Pipeline.TextEmbeddings.Encode(sessions, longPrompt, "blurry", PromptOverflow.Chunk, Pipeline.StableDiffusionPipeline.MaxPromptChunks, run, new List<string>());
        Assert.Equal(chunks * 77, text.Length);
        Assert.Equal(text.Prompt.Length, text.Negative.Length);

        // The tiny text encoder looks its hidden states up in a table: the negative side must be the rows of "blurry"'s ids,
        // then chunks - 1 chunks of the empty prompt's ids.
        var table = TinySdModel.EmbeddingTable();
        var ids = sessions.Tokenizer.Encode("blurry").InputIds.Concat(Enumerable.Repeat(sessions.Tokenizer.Encode("").InputIds, chunks - 1).SelectMany(x => x)).ToArray();
        var expected = ids.SelectMany(id => table.AsSpan(id * TinySdModel.Hidden, TinySdModel.Hidden).ToArray()).ToArray();
        Assert.Equal(expected, text.Negative);
        Assert.NotEqual(text.Negative[..(77 * TinySdModel.Hidden)], text.Negative[(77 * TinySdModel.Hidden)..(2 * 77 * TinySdModel.Hidden)]);
    }

    private static void WriteManifest(string model, double? vaeScalingFactor) =>
        File.WriteAllText(Path.Combine(model, "ctcal_manifest.json"), System.Text.Json.JsonSerializer.Serialize(vaeScalingFactor is { } f
            ? new { name = "m", family = "sd1", width = 64, height = 64, vaeScalingFactor = f } as object
            : new { name = "m", family = "sd1", width = 64, height = 64 }));

    [Theory]
    [InlineData("cuda", false)]
    [InlineData("directml", false)]
    [InlineData("cpu", true)]
    [InlineData("plain", true)]
    public async Task AModelExportedForAGpuProviderIsRefusedOnTheCpuProviderSayingHowToExportIt(string profile, bool runs)
    {
        string model = TinySdModel.Create(Models, "tiny");
        File.WriteAllText(Path.Combine(model, "ctcal_manifest.json"), System.Text.Json.JsonSerializer.Serialize(
            new { name = "m", family = "sd1", width = 64, height = 64, optimize = profile }));
        var (generator, _, _) = Create();

        if (runs)
        {
            Assert.Single((await generator.GenerateAsync(Request())).Images);
            return;
        }

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => generator.GenerateAsync(Request()));
        Assert.Contains($"Model 'tiny' was exported with --optimize {profile}", e.Message);
        Assert.Contains("CPU provider", e.Message);
        Assert.Contains("--optimize plain or cpu", e.Message);

        // The refusal costs nothing else: the same plugin still serves another model.
        TinySdModel.Create(Models, "other");
        Assert.Single((await generator.GenerateAsync(Request(model: "other"))).Images);
    }

    [Fact]
    public void VaeScalingFactorIsTakenFromTheManifestFirst()
    {
        string model = TinySdModel.Create(Models, "tiny");
        File.WriteAllText(Path.Combine(model, "vae_decoder", "config.json"), """{ "scaling_factor": 0.13025, "block_out_channels": [8, 8, 8, 8] }""");
        WriteManifest(model, 0.5);
        Assert.Equal(0.5, CTCal.Plugin.Models.OnnxModelFolder.Load(model).VaeScalingFactor);
        WriteManifest(model, null);
        Assert.Equal(0.13025, CTCal.Plugin.Models.OnnxModelFolder.Load(model).VaeScalingFactor);
        File.Delete(Path.Combine(model, "vae_decoder", "config.json"));
        Assert.Equal(0.18215, CTCal.Plugin.Models.OnnxModelFolder.Load(model).VaeScalingFactor);
    }

    [Fact]
    public async Task TheManifestsVaeScalingFactorDividesTheLatentsBeforeDecoding()
    {
        // The tiny VAE decoder is linear, so doubling the factor halves its output x, and pixel = round((x / 2 + 0.5) * 255):
        // (pixel_a - 127.5) = 2 (pixel_b - 127.5) within the two roundings (1.5 levels), where nothing is clipped.
        const double factor = 4;
        WriteManifest(TinySdModel.Create(Models, "a"), factor);
        WriteManifest(TinySdModel.Create(Models, "b"), 2 * factor);
        var (generator, _, _) = Create();
        byte[] a = PngReader.Read((await generator.GenerateAsync(Request(model: "a"))).Images[0].Png).Rgb;
        byte[] b = PngReader.Read((await generator.GenerateAsync(Request(model: "b"))).Images[0].Png).Rgb;
        Assert.All(a, p => Assert.InRange(p, (byte)1, (byte)254));
        Assert.True(a.Max(p => Math.Abs(p - 127.5)) >= 20, "the image is too flat to show the factor");
        for (int i = 0; i < a.Length; i++)
        {
            Assert.InRange((a[i] - 127.5) - 2 * (b[i] - 127.5), -1.5, 1.5);
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

    /// <summary>
    /// The denoiser's tensors bound once per request (I/O binding) give bitwise the PNGs of the per-call path, in every
    /// guidance layout (one batch-2 call, two batch-1 calls in memory mode low, the prompt half alone at guidance 1), over
    /// several images of one request (the bound buffers are reused), for fp32 and fp16 graphs and image-to-image.
    /// </summary>
    [Fact]
    public async Task IoBindingGivesBitwiseThePngsOfPerCallTensors()
    {
        TinySdModel.Create(Models, "tiny", vaeEncoderOutput: "latent_dist");
        TinySdModel.Create(Models, "fp16", fp16: true);
        foreach (var memory in new[] { MemoryMode.Balanced, MemoryMode.Low })
        {
            var (bound, _, _) = Create(memory: memory);
            var (perCall, _, _) = Create(memory: memory, ioBinding: false);
            foreach (var request in new[]
            {
                Request(count: 3),
                Request() with { GuidanceScale = 1.0 },
                Request(model: "fp16", count: 2),
            })
            {
                var expected = await perCall.GenerateAsync(request);
                var actual = await bound.GenerateAsync(request);
                Assert.Equal(expected.Images.Count, actual.Images.Count);
                for (int i = 0; i < expected.Images.Count; i++)
                {
                    Assert.Equal(expected.Images[i].Png, actual.Images[i].Png);
                }
            }

            var start = (await perCall.GenerateAsync(Request(seed: 5))).Images[0].Png;
            var fromImage = Request() with { InitImage = start, Strength = 0.6 };
            Assert.Equal((await perCall.GenerateAsync(fromImage)).Images[0].Png, (await bound.GenerateAsync(fromImage)).Images[0].Png);
        }
    }

    /// <summary>
    /// With a Debug-enabled log each request logs the time of each part and how many denoiser calls it made (one per step
    /// with batched guidance, two in memory mode low); no figure is checked against a time.
    /// </summary>
    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public async Task EachRequestLogsItsPartTimesAtDebug(bool lowMemory, int callsPerStep)
    {
        TinySdModel.Create(Models, "tiny");
        var (generator, _, log) = Create(memory: lowMemory ? MemoryMode.Low : MemoryMode.Balanced);
        await generator.GenerateAsync(Request(count: 2));
        string line = Assert.Single(log.Entries, e => e.Severity == LogSeverity.Debug && e.Message.StartsWith(OnnxImageGenerator.StageTimingsPrefix, StringComparison.Ordinal)).Message;
        foreach (string key in new[] { "text_encoder=", "vae_encoder=", "denoiser=", "sampler=", "vae_decoder=", "png=", "total=" })
        {
            Assert.Contains(key, line);
        }

        Assert.EndsWith($"denoiser_calls={2 * Request().Steps * callsPerStep}", line);
    }

    /// <summary>
    /// <c>warmUp</c> loads the listed model and runs one generation when the plugin starts: the first request finds the
    /// sessions loaded (its log has no model load) and makes the image it makes without warm-up. Without the setting
    /// the model loads on the first request.
    /// </summary>
    [Fact]
    public async Task WarmUpLoadsTheModelBeforeTheFirstRequest()
    {
        TinySdModel.Create(Models, "tiny");
        TinySdModel.Create(Models, "other");
        var (cold, coldRuntime, coldLog) = Create();
        await coldRuntime.WarmUpCompletion;
        Assert.False(coldRuntime.IsLoaded("tiny"));
        var expected = await cold.GenerateAsync(Request());
        Assert.Contains(coldLog.Entries, e => e.Message.StartsWith("Loading model tiny", StringComparison.Ordinal));

        var (warm, runtime, log) = Create(warmUp: ["tiny"]);
        await runtime.WarmUpCompletion;
        Assert.True(runtime.IsLoaded("tiny"));
        Assert.False(runtime.IsLoaded("other"));
        Assert.Contains(log.Entries, e => e.Severity == LogSeverity.Information && e.Message.StartsWith("Warmed up model tiny", StringComparison.Ordinal));
        Assert.DoesNotContain(log.Warnings, w => w.Contains("Warm-up", StringComparison.Ordinal));
        int loadsBefore = log.Entries.Count(e => e.Message.StartsWith("Loading model", StringComparison.Ordinal));
        Assert.Equal(1, loadsBefore);

        var first = await warm.GenerateAsync(Request());
        Assert.Equal(loadsBefore, log.Entries.Count(e => e.Message.StartsWith("Loading model", StringComparison.Ordinal)));
        Assert.Equal(expected.Images[0].Png, first.Images[0].Png);
    }

    [Fact]
    public void WarmUpOfAModelTheFolderLacksIsRefusedNamingTheSetting()
    {
        TinySdModel.Create(Models, "tiny");
        var e = Assert.Throws<PluginSettingsException>(() => Create(warmUp: ["tiyn"]));
        Assert.Contains("settings.warmUp", e.Message);
        Assert.Contains("'tiyn'", e.Message);
        Assert.Contains("tiny", e.Message);
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

    /// <summary>
    /// A folder made by another tool (no manifest) whose text encoder is 48 wide with gelu and whose UNet uses linear
    /// projections: SD2 by architecture. It used to be listed as sd1 because its width is not 1024.
    /// </summary>
    [Fact]
    public async Task TheFamilyOfAFolderWithoutManifestComesFromItsArchitectureNotItsWidth()
    {
        string folder = TinySdModel.Create(Models, "heldout");
        File.Delete(Path.Combine(folder, "ctcal_manifest.json"));
        File.WriteAllText(Path.Combine(folder, "text_encoder", "config.json"), """
            { "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 49408,
              "max_position_embeddings": 77, "hidden_act": "gelu" }
            """);
        File.WriteAllText(Path.Combine(folder, "unet", "config.json"), """
            { "block_out_channels": [8, 16], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
              "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "norm_num_groups": 4, "cross_attention_dim": 48,
              "use_linear_projection": true, "sample_size": 8 }
            """);
        var (generator, _, _) = Create();
        var model = Assert.Single(await generator.ListModelsAsync());
        Assert.Equal(("heldout", "sd2", 64, 64), (model.Id, model.Family, model.DefaultWidth, model.DefaultHeight));
    }
}

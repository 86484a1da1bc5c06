using CTCal.Contracts;
using CTCal.Core.Schedulers;
using CTCal.Core.Text;
using CTCal.Core.Threading;
using CTCal.Export;
using CTCal.Plugin;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Imaging;
using CTCal.Plugin.Onnx;
using CTCal.Plugin.Pipeline;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>
/// Two servable <see cref="TinySD3Pipeline"/>s exported once into one models folder: <c>sd3-t5</c> (with T5) and
/// <c>sd3</c> (without text_encoder_3).
/// </summary>
public sealed class SD3PluginModels : IDisposable
{
    public SD3PluginModels()
    {
        Models = TestPaths.NewTempDir("ctcal-integration-sd3-plugin");
        WithT5 = new TinySD3Pipeline(seed: 71, Path.Combine(Models, ".sources", "t5"), withT5: true, servable: true);
        WithoutT5 = new TinySD3Pipeline(seed: 81, Path.Combine(Models, ".sources", "no-t5"), servable: true);
        OnnxExporter.Export(new ExportOptions { ModelFolder = WithT5.Folder, OutputFolder = Path.Combine(Models, "sd3-t5") });
        OnnxExporter.Export(new ExportOptions { ModelFolder = WithoutT5.Folder, OutputFolder = Path.Combine(Models, "sd3") });
    }

    /// <summary>The plugin's models folder.</summary>
    public string Models { get; }

    public TinySD3Pipeline WithT5 { get; }

    public TinySD3Pipeline WithoutT5 { get; }

    public TinySD3Pipeline Pipeline(string id) => id == "sd3-t5" ? WithT5 : WithoutT5;

    public void Dispose()
    {
        WithT5.Dispose();
        WithoutT5.Dispose();
        try { Directory.Delete(Models, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// The plugin's SD3 pipeline (diffusers StableDiffusion3Pipeline / StableDiffusion3Img2ImgPipeline) on exported tiny
/// models: determinism, the T5-less warning, image-to-image, scheduler names, and the final latents against the
/// TorchSharp models the folders were exported from (SD3PromptEncoder + SD3Transformer2DModel in a plain Euler loop).
/// </summary>
public sealed class SD3PluginTests(SD3PluginModels models, Xunit.Abstractions.ITestOutputHelper log) : IClassFixture<SD3PluginModels>, IDisposable
{
    private const string Prompt = "a red cat";
    private const string Negative = "a cat";
    private readonly List<PluginRuntime> _runtimes = new();

    public void Dispose()
    {
        foreach (var r in _runtimes) r.Dispose();
    }

    private (OnnxImageGenerator Generator, PluginRuntime Runtime, RecordingLog Log) Create(MemoryMode memory = MemoryMode.Balanced)
    {
        var recording = new RecordingLog();
        var settings = new PluginSettings
        {
            ModelsFolder = models.Models,
            ExecutionProviders = new[] { ExecutionProviderKind.Cpu },
            IntraOpThreads = 1,
            InterOpThreads = 1,
            MemoryMode = memory,
        };
        var runtime = new PluginRuntime(settings, recording);
        _runtimes.Add(runtime);
        return (new OnnxImageGenerator(runtime), runtime, recording);
    }

    private static GenerationRequest Request(string model, long seed = 5, string? scheduler = null, byte[]? init = null, double strength = 0.5) => new()
    {
        Model = model,
        Prompt = Prompt,
        NegativePrompt = Negative,
        Width = 32,
        Height = 16,
        Steps = 4,
        GuidanceScale = 4.0,
        Seed = seed,
        Scheduler = scheduler,
        InitImage = init,
        Strength = strength,
    };

    [Theory]
    [InlineData("sd3-t5")]
    [InlineData("sd3")]
    public async Task SD3_same_seed_gives_identical_png_and_another_seed_a_different_one(string id)
    {
        var (generator, _, _) = Create();
        var progress = new List<GenerationProgress>();
        var first = await generator.GenerateAsync(Request(id), new SynchronousProgress<GenerationProgress>(progress.Add));
        var again = await generator.GenerateAsync(Request(id));
        var other = await generator.GenerateAsync(Request(id, seed: 6));

        Assert.Equal(FlowMatchEulerDiscreteScheduler.ClassName, first.Parameters.Scheduler);
        Assert.Equal(first.Images[0].Png, again.Images[0].Png);
        var (rgb, width, height) = PngDecoder.Decode(first.Images[0].Png);
        Assert.NotEqual(rgb, PngDecoder.Decode(other.Images[0].Png).Rgb); // pixels, not bytes: the PNG text holds the seed
        Assert.Equal((32, 16), (width, height));
        Assert.True(rgb.Distinct().Count() > 8, "the image is (nearly) flat");
        Assert.Equal(4, progress.Count(p => p.Stage == GenerationStage.Denoising));
    }

    [Fact]
    public async Task SD3_without_t5_is_served_with_one_warning_line_and_with_t5_without_it()
    {
        var (generator, _, recording) = Create();
        var without = await generator.GenerateAsync(Request("sd3"));
        var again = await generator.GenerateAsync(Request("sd3"));
        var with = await generator.GenerateAsync(Request("sd3-t5"));

        // Logged once, when the model loads; carried by every result of that model.
        var line = Assert.Single(recording.Warnings, w => w.Contains("text_encoder_3", StringComparison.Ordinal));
        Assert.Contains("'sd3'", line);
        Assert.Contains(line, without.Warnings);
        Assert.Contains(line, again.Warnings);
        Assert.DoesNotContain(with.Warnings, w => w.Contains("text_encoder_3", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SD3_image_to_image_keeps_the_image_at_strength_0_and_changes_it_at_0_5()
    {
        var (generator, _, _) = Create();
        var source = new byte[32 * 16 * 3];
        for (int i = 0; i < source.Length; i++) source[i] = (byte)(i * 7 % 251);
        byte[] init = PngEncoder.Encode(source, 32, 16, []);

        var kept = (await generator.GenerateAsync(Request("sd3-t5", init: init, strength: 0))).Images[0].Png;
        var keptOtherSeed = (await generator.GenerateAsync(Request("sd3-t5", seed: 9, init: init, strength: 0))).Images[0].Png;
        var half = (await generator.GenerateAsync(Request("sd3-t5", init: init, strength: 0.5))).Images[0].Png;
        var halfOtherSeed = (await generator.GenerateAsync(Request("sd3-t5", seed: 9, init: init, strength: 0.5))).Images[0].Png;

        // Strength 0 runs no step: the image is the VAE's round trip, (mean - shift) * scale, then / scale + shift, decoded.
        Assert.Equal(PngDecoder.Decode(kept).Rgb, PngDecoder.Decode(keptOtherSeed).Rgb); // the PNGs differ in their seed text
        var expected = RoundTrip(models.WithT5.Vae, source, 32, 16);
        var (keptRgb, _, _) = PngDecoder.Decode(kept);
        int worst = keptRgb.Select((v, i) => Math.Abs(v - expected[i])).Max();
        log.WriteLine($"strength 0 vs the torch VAE round trip: max {worst} levels");
        Assert.True(worst <= 1, $"strength 0 differs from the VAE round trip by {worst} levels");

        var (halfRgb, _, _) = PngDecoder.Decode(half);
        double meanChange = halfRgb.Select((v, i) => Math.Abs(v - keptRgb[i])).Average();
        log.WriteLine($"strength 0.5 vs 0: mean {meanChange:F1} levels");
        Assert.True(meanChange > 2, $"strength 0.5 changed the image by only {meanChange:F2} levels on average");
        Assert.NotEqual(halfRgb, PngDecoder.Decode(halfOtherSeed).Rgb);
    }

    [Theory]
    [InlineData("sd3-t5", false)]
    [InlineData("sd3-t5", true)]   // memory mode low: guidance as two transformer calls
    [InlineData("sd3", false)]
    public void SD3_final_latents_match_the_torch_models_in_a_plain_flow_match_euler_loop(string id, bool lowMemory)
    {
        var memory = lowMemory ? MemoryMode.Low : MemoryMode.Balanced;
        var (_, runtime, _) = Create(memory);
        var folder = runtime.Catalog.Find(id);
        var p = OnnxImageGenerator.Resolve(Request(id), folder.Info, "euler_a");
        float[] actual, perCall;
        var (sessions, lease) = runtime.Lease(folder);
        using (lease)
        using (var run = new RunOptions())
        {
            var pipeline = new SD3Pipeline(sessions, p, null, memory, new List<string>(), run);
            using (var bound = pipeline.Bind(guided: p.GuidanceScale > 1.0))
            {
                actual = pipeline.Denoise(p.Seed, 0, bound, null, CancellationToken.None);
            }

            perCall = pipeline.Denoise(p.Seed, 0, null, null, CancellationToken.None);
        }

        // The transformer's tensors bound once (I/O binding) give bitwise the latents of per-call tensors.
        Assert.Equal(perCall, actual);

        float[] expected = TorchLatents(models.Pipeline(id), Path.Combine(models.Models, id), p);
        double diff = Compare.MaxAbsDiff(actual, expected);
        double scale = expected.Max(v => Math.Abs(v));
        log.WriteLine($"{id} {memory}: max |plugin - torch| = {diff:E2} over latents up to {scale:F2}");
        Assert.True(scale > 0.1, $"latents are near zero ({scale})");
        Assert.True(diff < 1e-4, $"plugin latents differ from torch by {diff:E2}");
    }

    [Fact]
    public async Task SD1_scheduler_names_are_refused_for_SD3_models_and_the_flow_match_one_for_SD1()
    {
        var (generator, _, _) = Create();
        var e = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(Request("sd3", scheduler: "euler_a")));
        Assert.Contains("'euler_a'", e.Message);
        Assert.Contains(FlowMatchEulerDiscreteScheduler.ClassName, e.Message);

        var named = await generator.GenerateAsync(Request("sd3", scheduler: "flowmatcheulerdiscretescheduler"));
        Assert.Equal(FlowMatchEulerDiscreteScheduler.ClassName, named.Parameters.Scheduler);

        var sd1 = new ModelInfo("tiny", "tiny", models.Models, "sd1", 64, 64, false, null);
        var refused = Assert.Throws<ArgumentException>(() =>
            OnnxImageGenerator.Resolve(Request("tiny", scheduler: FlowMatchEulerDiscreteScheduler.ClassName), sd1, "euler_a"));
        Assert.Contains($"'{FlowMatchEulerDiscreteScheduler.ClassName}'", refused.Message);
        Assert.Contains("sd1", refused.Message);
    }

    /// <summary>
    /// diffusers' StableDiffusion3Pipeline in TorchSharp: SD3PromptEncoder on the same token ids, x = N(0, I) from
    /// GaussianNoise(seed), then x += (sigma_{i+1} - sigma_i) * (v_neg + g (v_text - v_neg)) with v from the transformer.
    /// </summary>
    private static float[] TorchLatents(TinySD3Pipeline pipeline, string onnxFolder, GenerationParameters p)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var texts = new[] { p.Prompt, p.NegativePrompt };
        Tensor ClipIds(string folder)
        {
            var tokenizer = ClipTokenizer.FromFolder(Path.Combine(onnxFolder, folder));
            return tensor(texts.SelectMany(t => tokenizer.Encode(t).InputIds.Select(i => (long)i)).ToArray(), new long[] { 2, ClipTokenizer.MaxLength });
        }

        Tensor? t5Ids = null;
        if (pipeline.TextEncoder3 is not null)
        {
            var t5 = T5Tokenizer.FromFolder(Path.Combine(onnxFolder, "tokenizer_3"));
            t5Ids = tensor(texts.SelectMany(t => t5.Encode(t)).ToArray(), new long[] { 2, T5Tokenizer.DefaultMaxLength });
        }

        var encoder = new SD3PromptEncoder(pipeline.TextEncoder, pipeline.TextEncoder2, pipeline.TextEncoder3, pipeline.Transformer.Config.JointAttentionDim);
        var (embeds, pooled) = encoder.Encode(ClipIds("tokenizer"), ClipIds("tokenizer_2"), t5Ids); // rows: prompt, negative

        long[] shape = { 1, 16, p.Height / 2, p.Width / 2 };
        var start = new float[shape.Aggregate(1L, (a, b) => a * b)];
        new GaussianNoise(p.Seed).NextGaussian(start);
        var x = tensor(start, shape);
        var scheduler = new FlowMatchEulerDiscreteScheduler(CTCal.Core.Schedulers.SchedulerConfig.Load(Path.Combine(onnxFolder, "scheduler", "scheduler_config.json")));
        scheduler.SetTimesteps(p.Steps);
        for (int i = 0; i < scheduler.Timesteps.Count; i++)
        {
            var t = full(new long[] { 2 }, (float)scheduler.Timesteps[i]);
            var v = pipeline.Transformer.forward(cat(new[] { x, x }, 0), embeds, pooled, t); // [2, 16, h, w]
            var guided = v[1] + (float)p.GuidanceScale * (v[0] - v[1]);
            x = x + (scheduler.Sigmas[i + 1] - scheduler.Sigmas[i]) * guided.unsqueeze(0);
        }

        return Compare.Floats(x);
    }

    /// <summary>RGB rows through the torch VAE: decode(encoder mean), as 8-bit RGB rows.</summary>
    private static byte[] RoundTrip(AutoencoderKL vae, byte[] rgb, int width, int height)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int plane = width * height;
        var chw = new float[3 * plane];
        for (int i = 0; i < plane; i++)
        {
            for (int c = 0; c < 3; c++) chw[c * plane + i] = rgb[i * 3 + c] / 127.5f - 1f;
        }

        var (mean, _) = vae.Encode(tensor(chw, new long[] { 1, 3, height, width }));
        var image = Compare.Floats(vae.Decode(mean));
        var result = new byte[3 * plane];
        for (int i = 0; i < plane; i++)
        {
            for (int c = 0; c < 3; c++) result[i * 3 + c] = (byte)MathF.Round(Math.Clamp(image[c * plane + i] * 0.5f + 0.5f, 0f, 1f) * 255f);
        }

        return result;
    }
}

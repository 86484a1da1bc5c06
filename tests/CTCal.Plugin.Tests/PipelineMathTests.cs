using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.Schedulers;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// Text-to-image on closed-form ONNX models, against the image computed by hand: the classifier-free guidance formula,
/// the initial noise scaled by init_noise_sigma, the sampler's input scaling, the division by the VAE's scaling_factor
/// and the pixel mapping round(clamp(x / 2 + 0.5, 0, 1) * 255). Token ids, the Euler timesteps, sigmas and
/// init_noise_sigma come from the reference fixtures (openai/CLIP, diffusers 0.27.2), not from the plugin's own code.
/// </summary>
public sealed class PipelineMathTests : IDisposable
{
    private const int Hidden = 8;
    private const int Vocab = 49408;
    private const int Width = 64;
    private const int Height = 48;
    private const double ScalingFactor = 0.5; // not SD's 0.18215, so a pipeline that ignores the model's value shows
    private const string Prompt = "a red cube on top of a blue sphere";
    private const string Negative = "two cats and three dogs";

    private readonly string _root = TestPaths.NewTempDir("ctcal-math");
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

    /// <summary>Embedding of token v, hidden unit h (a closed form, so the text means are computable).</summary>
    private static float[] Embedding()
    {
        var e = new float[Vocab * Hidden];
        for (int v = 0; v < Vocab; v++)
        {
            for (int h = 0; h < Hidden; h++)
            {
                e[v * Hidden + h] = (float)((v % 97) / 48.0 - 1.0 + 0.05 * h);
            }
        }

        return e;
    }

    /// <summary>The VAE decoder's ConvTranspose kernel [4, 3, 8, 8] and bias [3].</summary>
    private static (float[] Kernel, float[] Bias) Decoder()
    {
        var kernel = new float[4 * 3 * 8 * 8];
        for (int i = 0; i < 4; i++)
        {
            for (int c = 0; c < 3; c++)
            {
                for (int ky = 0; ky < 8; ky++)
                {
                    for (int kx = 0; kx < 8; kx++)
                    {
                        kernel[((i * 3 + c) * 8 + ky) * 8 + kx] = (float)(0.4 * Math.Cos(1.7 * i + 2.3 * c + 0.9 * ky + 0.4 * kx));
                    }
                }
            }
        }

        return (kernel, new[] { 0.1f, -0.2f, 0.3f });
    }

    /// <summary>
    /// text encoder: last_hidden_state = Embedding()[input_ids]; UNet: out_sample = 0.5 * sample + mean(encoder_hidden_states)
    /// + 0.001 * timestep (float [batch]); VAE decoder: ConvTranspose with <see cref="Decoder"/>, stride 8; vae_decoder/config.json
    /// with scaling_factor <see cref="ScalingFactor"/>; the scheduler config of the fixture's euler/20 case.
    /// </summary>
    private string CreateModel(JsonElement schedulerConfig)
    {
        string dir = Path.Combine(Models, "closed-form");
        new TinyOnnx.Graph()
            .Input("input_ids", TinyOnnx.Int64, "batch", 77L)
            .Init("embedding", new long[] { Vocab, Hidden }, Embedding())
            .Node("Gather", new[] { "embedding", "input_ids" }, new[] { "last_hidden_state" }, ("axis", 0L))
            .Output("last_hidden_state", TinyOnnx.Float, "batch", 77L, (long)Hidden)
            .Save(Path.Combine(dir, "text_encoder", "model.onnx"));

        new TinyOnnx.Graph()
            .Input("sample", TinyOnnx.Float, "batch", 4L, "height", "width")
            .Input("timestep", TinyOnnx.Float, "batch")
            .Input("encoder_hidden_states", TinyOnnx.Float, "batch", "sequence", (long)Hidden)
            .Init("half", new long[0], new[] { 0.5f })
            .Init("milli", new long[0], new[] { 0.001f })
            .Init("to4d", new long[] { 4 }, new long[] { -1, 1, 1, 1 })
            .Node("Mul", new[] { "sample", "half" }, new[] { "scaled" })
            .Node("ReduceMean", new[] { "encoder_hidden_states" }, new[] { "text_mean" }, ("axes", new long[] { 1, 2 }), ("keepdims", 1L))
            .Node("Reshape", new[] { "text_mean", "to4d" }, new[] { "text_mean4" })
            .Node("Reshape", new[] { "timestep", "to4d" }, new[] { "t4" })
            .Node("Mul", new[] { "t4", "milli" }, new[] { "t_scaled" })
            .Node("Add", new[] { "scaled", "text_mean4" }, new[] { "partial" })
            .Node("Add", new[] { "partial", "t_scaled" }, new[] { "out_sample" })
            .Output("out_sample", TinyOnnx.Float, "batch", 4L, "height", "width")
            .Save(Path.Combine(dir, "unet", "model.onnx"));

        var (kernel, bias) = Decoder();
        new TinyOnnx.Graph()
            .Input("latent_sample", TinyOnnx.Float, "batch", 4L, "height", "width")
            .Init("kernel", new long[] { 4, 3, 8, 8 }, kernel)
            .Init("bias", new long[] { 3 }, bias)
            .Node("ConvTranspose", new[] { "latent_sample", "kernel", "bias" }, new[] { "sample" }, ("strides", new long[] { 8, 8 }), ("kernel_shape", new long[] { 8, 8 }))
            .Output("sample", TinyOnnx.Float, "batch", 3L, "out_height", "out_width")
            .Save(Path.Combine(dir, "vae_decoder", "model.onnx"));
        File.WriteAllText(
            Path.Combine(dir, "vae_decoder", "config.json"),
            JsonSerializer.Serialize(new { _class_name = "AutoencoderKL", scaling_factor = ScalingFactor, block_out_channels = new[] { 8, 8, 8, 8 } }));

        string fixtures = TestPaths.Fixtures;
        Directory.CreateDirectory(Path.Combine(dir, "tokenizer"));
        foreach (string file in new[] { "vocab.json", "merges.txt" })
        {
            File.Copy(Path.Combine(fixtures, "clip-tokenizer", file), Path.Combine(dir, "tokenizer", file));
        }

        Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
        File.WriteAllText(Path.Combine(dir, "scheduler", "scheduler_config.json"), schedulerConfig.GetRawText());
        File.Copy(Path.Combine(fixtures, "tiny-sd1", "model_index.json"), Path.Combine(dir, "model_index.json"));
        File.WriteAllText(
            Path.Combine(dir, "ctcal_manifest.json"),
            JsonSerializer.Serialize(new { name = "closed form", family = "sd1", width = Width, height = Height }));
        return dir;
    }

    private OnnxImageGenerator Generator(MemoryMode memory)
    {
        var settings = new PluginSettings
        {
            ModelsFolder = Models,
            ExecutionProviders = new[] { ExecutionProviderKind.Cpu },
            IntraOpThreads = 1,
            InterOpThreads = 1,
            MemoryMode = memory,
        };
        var runtime = new PluginRuntime(settings, new RecordingLog());
        _runtimes.Add(runtime);
        return new OnnxImageGenerator(runtime);
    }

    [Theory]
    [InlineData(7.5, false)] // both guidance halves in one UNet call
    [InlineData(7.5, true)]  // low memory: one call per half
    [InlineData(1.0, false)] // unguided: the negative prompt plays no part
    public async Task TheImageIsTheOneComputedByHand(double guidance, bool lowMemory)
    {
        var memory = lowMemory ? MemoryMode.Low : MemoryMode.Balanced;
        using var schedulers = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.Fixtures, "schedulers.json")));
        var euler = schedulers.RootElement.GetProperty("euler/20");
        double[] timesteps = euler.GetProperty("timesteps").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        double[] sigmas = euler.GetProperty("sigmas").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        double initNoiseSigma = euler.GetProperty("init_noise_sigma").GetDouble();
        CreateModel(euler.GetProperty("config"));
        const long seed = 11;

        var result = await Generator(memory).GenerateAsync(new GenerationRequest
        {
            Model = "closed-form",
            Prompt = Prompt,
            NegativePrompt = Negative,
            Width = Width,
            Height = Height,
            Steps = timesteps.Length,
            GuidanceScale = guidance,
            Seed = seed,
            Scheduler = "euler",
        });
        var png = PngReader.Read(Assert.Single(result.Images).Png);
        Assert.Equal((Width, Height), (png.Width, png.Height));

        // Text: the UNet sees each prompt only through the mean of its embeddings.
        var embedding = Embedding();
        double textMean = ClosedFormReference.TextMean(embedding, Hidden, ClosedFormReference.Sd1InputIds(Prompt));
        double negativeMean = ClosedFormReference.TextMean(embedding, Hidden, ClosedFormReference.Sd1InputIds(Negative));
        Assert.True(Math.Abs(textMean - negativeMean) > 1e-3, "the two prompts must differ for guidance to show");

        // x_T = init_noise_sigma * N(0, I) from the seed, [1, 4, 6, 8]
        int h = Height / 8, w = Width / 8;
        var noise = new float[4 * h * w];
        new GaussianNoise(seed).NextGaussian(noise);
        double[] x = noise.Select(n => initNoiseSigma * n).ToArray();

        // Euler (Karras et al. 2022, Algorithm 2, no churn) with an epsilon model: x0 = x - sigma eps, d = (x - x0) / sigma = eps,
        // x <- x + (sigma_next - sigma) eps; the model sees x / sqrt(sigma^2 + 1). Guidance: eps = eps_u + g (eps_c - eps_u).
        for (int i = 0; i < timesteps.Length; i++)
        {
            double sigma = sigmas[i], next = sigmas[i + 1], t = (float)timesteps[i];
            for (int k = 0; k < x.Length; k++)
            {
                double input = x[k] / Math.Sqrt(sigma * sigma + 1);
                double epsText = 0.5 * input + textMean + 0.001 * t;
                double epsNegative = 0.5 * input + negativeMean + 0.001 * t;
                double eps = guidance > 1 ? epsNegative + guidance * (epsText - epsNegative) : epsText;
                x[k] += (next - sigma) * eps;
            }
        }

        // VAE decoder on latents / scaling_factor, then the pixel mapping.
        var (kernel, bias) = Decoder();
        double[] image = ClosedFormReference.Decode(x.Select(v => v / ScalingFactor).ToArray(), h, w, kernel, bias);
        Assert.Contains(image, v => v < -1);  // some pixels clamp to 0 ...
        Assert.Contains(image, v => v > 1);   // ... some to 255 ...
        Assert.True(image.Count(v => v is > -0.9 and < 0.9) > image.Length / 4, "most of the image must lie inside the clamp range");
        ClosedFormReference.AssertPixels(ClosedFormReference.ToPixelScale(image, Width, Height), png.Rgb);
    }
}

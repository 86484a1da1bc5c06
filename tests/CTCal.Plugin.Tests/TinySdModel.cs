using System.Text.Json;

namespace CTCal.Tests;

/// <summary>
/// Lays out a complete (tiny) SD ONNX model folder in the Optimum layout, with models small enough to run in
/// milliseconds: text encoder = embedding lookup, UNet = 0.5*sample + mean(text) + 0.001*t + 0.05*cos(pi*t) (the
/// cosine makes a timestep that is off by one, e.g. truncated instead of rounded, visible), VAE decoder = one
/// 8x8 stride-8 transposed convolution. The variants choose the exporter conventions the pipeline must adapt to.
/// </summary>
public static class TinySdModel
{
    public const int Hidden = 8;
    public const int Vocab = 49408;

    public enum TimestepKind
    {
        /// <summary>int64 [batch] (old diffusers script).</summary>
        Int64Batch,

        /// <summary>int32 [batch] (some converters narrow int64 inputs).</summary>
        Int32Batch,

        /// <summary>float32 [1] (OnnxStack).</summary>
        FloatOne,

        /// <summary>float32 scalar (current Optimum).</summary>
        FloatScalar,
    }

    /// <param name="fixedShapes">Declare batch 1 and a 77-token sequence instead of symbolic dimensions (some exports do).</param>
    /// <param name="fp16">Declare the float inputs and outputs (text encoder output, UNet sample, hidden states and output, VAE
    /// decoder input and output) as float16, with Casts around the same float32 computation (fp16 exports do).</param>
    /// <param name="vaeEncoderOutput">Adds a VAE encoder with this output: <c>latent_sample</c> [b, 4, h, w] or
    /// <c>latent_parameters</c> [b, 8, h, w] (mean and log-variance); null: none.</param>
    public static string Create(string modelsFolder, string id, bool int32Ids = false, TimestepKind timestep = TimestepKind.Int64Batch, bool fixedShapes = false, string? vaeEncoderOutput = null, bool fp16 = false)
    {
        int floatType = fp16 ? TinyOnnx.Float16 : TinyOnnx.Float;
        object batch = fixedShapes ? 1L : "batch";
        object sequence = fixedShapes ? 77L : "sequence";
        string dir = Path.Combine(modelsFolder, id);
        Directory.CreateDirectory(dir);

        // text_encoder: input_ids [batch, 77] -> last_hidden_state [batch, 77, 8]
        var (embedding, kernel, rng) = DrawWeights();
        new TinyOnnx.Graph()
            .Input("input_ids", int32Ids ? TinyOnnx.Int32 : TinyOnnx.Int64, batch, 77L)
            .Init("embedding", new long[] { Vocab, Hidden }, embedding)
            .Node("Gather", new[] { "embedding", "input_ids" }, new[] { fp16 ? "hidden_f" : "last_hidden_state" }, ("axis", 0L))
            .CastIf(fp16, "hidden_f", "last_hidden_state", TinyOnnx.Float16)
            .Output("last_hidden_state", floatType, batch, 77L, (long)Hidden)
            .Save(Path.Combine(dir, "text_encoder", "model.onnx"));

        // unet: out_sample = 0.5 * sample + mean(encoder_hidden_states) + 0.001 * t + 0.05 * cos(pi * t)
        var unet = new TinyOnnx.Graph()
            .Input("sample", floatType, batch, 4L, "height", "width");
        unet = timestep switch
        {
            TimestepKind.Int64Batch => unet.Input("timestep", TinyOnnx.Int64, batch),
            TimestepKind.Int32Batch => unet.Input("timestep", TinyOnnx.Int32, batch),
            TimestepKind.FloatOne => unet.Input("timestep", TinyOnnx.Float, 1L),
            _ => unet.Input("timestep", TinyOnnx.Float),
        };
        unet.Input("encoder_hidden_states", floatType, batch, sequence, (long)Hidden)
            .CastIf(fp16, "sample", "sample_f", TinyOnnx.Float)
            .CastIf(fp16, "encoder_hidden_states", "hidden_f", TinyOnnx.Float)
            .Init("half", new long[0], new[] { 0.5f })
            .Init("milli", new long[0], new[] { 0.001f })
            .Init("pi", new long[0], new[] { MathF.PI })
            .Init("twentieth", new long[0], new[] { 0.05f })
            .Init("to4d", new long[] { 4 }, new long[] { -1, 1, 1, 1 })
            .Node("Mul", new[] { fp16 ? "sample_f" : "sample", "half" }, new[] { "scaled" })
            .Node("ReduceMean", new[] { fp16 ? "hidden_f" : "encoder_hidden_states" }, new[] { "text_mean" }, ("axes", new long[] { 1, 2 }), ("keepdims", 1L))
            .Node("Reshape", new[] { "text_mean", "to4d" }, new[] { "text_mean4" })
            .Node("Cast", new[] { "timestep" }, new[] { "t_float" }, ("to", (long)TinyOnnx.Float))
            .Node("Reshape", new[] { "t_float", "to4d" }, new[] { "t4" })
            .Node("Mul", new[] { "t4", "milli" }, new[] { "t_scaled" })
            .Node("Mul", new[] { "t4", "pi" }, new[] { "t_pi" })
            .Node("Cos", new[] { "t_pi" }, new[] { "t_cos" })
            .Node("Mul", new[] { "t_cos", "twentieth" }, new[] { "t_wave" })
            .Node("Add", new[] { "scaled", "text_mean4" }, new[] { "partial" })
            .Node("Add", new[] { "partial", "t_scaled" }, new[] { "partial_t" })
            .Node("Add", new[] { "partial_t", "t_wave" }, new[] { fp16 ? "out_f" : "out_sample" })
            .CastIf(fp16, "out_f", "out_sample", TinyOnnx.Float16)
            .Output("out_sample", floatType, batch, 4L, "height", "width")
            .Save(Path.Combine(dir, "unet", "model.onnx"));

        // vae_decoder: latent_sample [batch, 4, h, w] -> sample [batch, 3, 8h, 8w]
        new TinyOnnx.Graph()
            .Input("latent_sample", floatType, "batch", 4L, "height", "width")
            .CastIf(fp16, "latent_sample", "latent_f", TinyOnnx.Float)
            .Init("kernel", new long[] { 4, 3, 8, 8 }, kernel)
            .Node("ConvTranspose", new[] { fp16 ? "latent_f" : "latent_sample", "kernel" }, new[] { fp16 ? "sample_f" : "sample" }, ("strides", new long[] { 8, 8 }), ("kernel_shape", new long[] { 8, 8 }))
            .CastIf(fp16, "sample_f", "sample", TinyOnnx.Float16)
            .Output("sample", floatType, "batch", 3L, "out_height", "out_width")
            .Save(Path.Combine(dir, "vae_decoder", "model.onnx"));

        if (vaeEncoderOutput is not null)
        {
            // vae_encoder: sample [batch, 3, H, W] -> one 8x8 stride-8 convolution -> [batch, 4 or 8, H/8, W/8]
            long outChannels = vaeEncoderOutput == "latent_parameters" ? 8 : 4;
            var encoderKernel = new float[outChannels * 3 * 8 * 8];
            for (int i = 0; i < encoderKernel.Length; i++)
            {
                encoderKernel[i] = (float)(rng.NextDouble() - 0.5) * 0.1f;
            }

            new TinyOnnx.Graph()
                .Input("sample", TinyOnnx.Float, "batch", 3L, "height", "width")
                .Init("kernel", new long[] { outChannels, 3, 8, 8 }, encoderKernel)
                .Node("Conv", new[] { "sample", "kernel" }, new[] { vaeEncoderOutput }, ("strides", new long[] { 8, 8 }), ("kernel_shape", new long[] { 8, 8 }))
                .Output(vaeEncoderOutput, TinyOnnx.Float, "batch", outChannels, "latent_height", "latent_width")
                .Save(Path.Combine(dir, "vae_encoder", "model.onnx"));
        }

        // Tokenizer files and configs come from the reference fixtures.
        string fixtures = TestPaths.Fixtures;
        Directory.CreateDirectory(Path.Combine(dir, "tokenizer"));
        foreach (string file in new[] { "vocab.json", "merges.txt" })
        {
            File.Copy(Path.Combine(fixtures, "clip-tokenizer", file), Path.Combine(dir, "tokenizer", file));
        }

        Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
        File.Copy(Path.Combine(fixtures, "tiny-sd1", "scheduler", "scheduler_config.json"), Path.Combine(dir, "scheduler", "scheduler_config.json"));
        File.Copy(Path.Combine(fixtures, "tiny-sd1", "model_index.json"), Path.Combine(dir, "model_index.json"));
        File.WriteAllText(
            Path.Combine(dir, "ctcal_manifest.json"),
            JsonSerializer.Serialize(new { name = $"Tiny {id}", family = "sd1", width = 64, height = 64, description = "hand-made test model" }));
        return dir;
    }

    /// <summary>The text encoder's embedding table [Vocab, Hidden]: the tiny text encoder's hidden state of a token is its row.</summary>
    public static float[] EmbeddingTable() => Weights().Embedding;

    /// <summary>
    /// The text encoder's embedding table [Vocab, Hidden] and the VAE decoder's ConvTranspose kernel [4, 3, 8, 8] (no
    /// bias) that <see cref="Create"/> writes, for tests that compute the expected image by hand.
    /// </summary>
    public static (float[] Embedding, float[] DecoderKernel) Weights()
    {
        var (embedding, kernel, _) = DrawWeights();
        return (embedding, kernel);
    }

    /// <summary>Seeded weights; the generator is returned positioned for the optional VAE encoder's kernel.</summary>
    private static (float[] Embedding, float[] DecoderKernel, Random Rng) DrawWeights()
    {
        var rng = new Random(1234);
        var embedding = new float[Vocab * Hidden];
        for (int i = 0; i < embedding.Length; i++)
        {
            embedding[i] = (float)(rng.NextDouble() * 2 - 1);
        }

        var kernel = new float[4 * 3 * 8 * 8];
        for (int i = 0; i < kernel.Length; i++)
        {
            kernel[i] = (float)(rng.NextDouble() - 0.5) * 0.5f;
        }

        return (embedding, kernel, rng);
    }
}

using CTCal.Core.Schedulers;
using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// Image-to-image pieces (diffusers StableDiffusionImg2ImgPipeline): the VAE encoder turns the start image into
/// latents, and only the last <c>strength</c> part of the schedule runs.
/// </summary>
internal static class ImageToImage
{
    /// <summary>
    /// RGB rows -> [-1, 1] CHW -> VAE encoder -> (latents - shift_factor) * scaling_factor, [1, C, H/f, W/f] (the shift is 0 but for SD3). The encoder's output is
    /// read by its declared name: <c>latent_sample</c> (older exports, already latents) or <c>latent_parameters</c>
    /// (newer Optimum: mean and log-variance stacked on the channel axis; the mean is used, so results stay
    /// deterministic).
    /// </summary>
    public static float[] Encode(ModelSessions model, byte[] rgb, int width, int height, long[] latentShape, RunOptions run)
    {
        var session = model.VaeEncoder;
        string where = model.Model.VaeEncoderPath!;
        string inputName = session.InputMetadata.ContainsKey("sample") ? "sample" : session.InputNames[0];
        int plane = width * height;
        var chw = new float[3 * plane];
        for (int i = 0; i < plane; i++)
        {
            for (int c = 0; c < 3; c++)
            {
                chw[c * plane + i] = rgb[i * 3 + c] / 127.5f - 1f; // [0, 255] -> [-1, 1]
            }
        }

        using var input = OnnxTensors.Floats(session.InputMetadata[inputName], chw, new long[] { 1, 3, height, width }, where);
        string output = OnnxTensors.OutputName(session, "latent_sample", "latent_parameters");
        using var outputs = session.Run(run, new[] { inputName }, new[] { input }, new[] { output });
        var values = OnnxTensors.ReadFloats(outputs[0], where, out var shape);
        long channels = latentShape[1];
        bool parameters = output == "latent_parameters" || (shape.Length == 4 && shape[1] == 2 * channels);
        if (shape.Length != 4 || shape[0] != 1 || shape[1] != (parameters ? 2 * channels : channels) || shape[2] != latentShape[2] || shape[3] != latentShape[3])
        {
            throw new InvalidDataException(
                $"{where}: output '{output}' has shape [{string.Join(", ", shape)}], expected [1, {(parameters ? 2 * channels : channels)}, {latentShape[2]}, {latentShape[3]}]");
        }

        // [1, 2C, h, w] (mean, logvar) -> the first C channels are the mean; channel-major, so a prefix copy.
        int length = (int)(channels * latentShape[2] * latentShape[3]);
        var latents = new float[length];
        float scale = (float)model.Model.VaeScalingFactor, shift = (float)model.Model.VaeShiftFactor;
        for (int k = 0; k < length; k++)
        {
            latents[k] = (values[k] - shift) * scale;
        }

        return latents;
    }

    /// <summary>
    /// The first latents of image-to-image: <paramref name="initLatents"/> noised by the scheduler's forward process to the
    /// first of <paramref name="remaining"/>, or, when no timestep remains (strength 0), a copy of them.
    /// </summary>
    public static float[] NoisedStart(IDiffusionScheduler scheduler, float[] initLatents, float[] noise, IReadOnlyList<double> remaining)
    {
        if (remaining.Count == 0)
        {
            return (float[])initLatents.Clone();
        }

        var noisy = new float[noise.Length];
        scheduler.AddNoise(initLatents, noise, remaining[0], noisy);
        return noisy;
    }

    /// <summary>The timesteps left when only <paramref name="strength"/> of the schedule runs (diffusers' get_timesteps).</summary>
    public static IReadOnlyList<double> RemainingTimesteps(IReadOnlyList<double> timesteps, double strength)
    {
        int steps = timesteps.Count;
        int initSteps = Math.Min((int)(steps * strength), steps);
        int start = steps - initSteps;
        return timesteps.Skip(start).ToArray();
    }
}

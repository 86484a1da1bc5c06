using CTCal.Core.Models;
using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// Calls the UNet with inputs shaped as its metadata declares (<c>sample</c>, <c>timestep</c>,
/// <c>encoder_hidden_states</c>), batching the unconditional and text halves of classifier-free guidance into one call
/// when the model's batch dimension allows it. With a <see cref="StepCacheState"/> (step caching), full steps also fetch the
/// UNet's deep feature and the steps between run the shallow UNet on it (<see cref="StepCaching"/>).
/// </summary>
internal sealed class UnetRunner
{
    private readonly ModelSessions _model;
    private readonly NodeMetadata _sample;
    private readonly NodeMetadata _timestep;
    private readonly NodeMetadata _hidden;
    private readonly string _output;
    private readonly bool _batched;

    private readonly NodeMetadata? _feature;

    public UnetRunner(ModelSessions model, int width, int height, bool batchedGuidance, int stepCache = 1)
    {
        _model = model;
        var session = model.Unet;
        string where = model.Model.UnetPath;
        _sample = OnnxTensors.Input(session, "sample", where);
        _timestep = OnnxTensors.Input(session, "timestep", where);
        _hidden = OnnxTensors.Input(session, "encoder_hidden_states", where);
        _output = OnnxTensors.OutputName(session, "out_sample");

        int[] dims = _sample.Dimensions;
        if (dims.Length != 4)
        {
            throw new InvalidDataException($"{where}: input 'sample' has rank {dims.Length}, expected 4");
        }

        int channels = dims[1] > 0 ? dims[1] : 4;
        int factor = model.Model.VaeScaleFactor; // pixels per latent cell (8 for SD 1.x/2.x)
        int latentHeight = height / factor, latentWidth = width / factor;
        if ((dims[2] > 0 && dims[2] != latentHeight) || (dims[3] > 0 && dims[3] != latentWidth))
        {
            throw new ArgumentException($"{where} was exported for {dims[3] * factor}x{dims[2] * factor} only; requested {width}x{height}");
        }

        LatentShape = new long[] { 1, channels, latentHeight, latentWidth };
        LatentLength = channels * latentHeight * latentWidth;
        _batched = batchedGuidance && dims[0] != 1;

        // A fixed sequence length (77) means one prompt window; a dynamic one lets long prompts use several chunks.
        int[] hiddenDims = _hidden.Dimensions;
        MaxPromptChunks = hiddenDims.Length == 3 && hiddenDims[1] > 0 ? Math.Max(1, hiddenDims[1] / 77) : StableDiffusionPipeline.MaxPromptChunks;

        if (stepCache > 1)
        {
            // both graphs are checked before the first step: the full UNet's feature output, the shallow UNet's inputs
            if (!session.OutputMetadata.ContainsKey(ManifestStepCache.FeatureName))
            {
                throw new InvalidDataException(
                    $"{where}: has no output '{ManifestStepCache.FeatureName}' (outputs: {string.Join(", ", session.OutputNames)}), but the manifest records step-cache graphs; export the model again with --step-cache-branch");
            }

            var shallow = model.ShallowUnet;
            string shallowPath = model.Model.ShallowUnetPath;
            foreach (string input in new[] { "sample", "timestep", "encoder_hidden_states" })
            {
                OnnxTensors.Input(shallow, input, shallowPath);
            }

            _feature = OnnxTensors.Input(shallow, ManifestStepCache.FeatureName, shallowPath);
        }
    }

    /// <summary>[1, C, H/f, W/f] with f the VAE scale factor.</summary>
    public long[] LatentShape { get; }

    public int LatentLength { get; }

    public int MaxPromptChunks { get; }

    /// <summary>Guidance's two halves go in one batch-2 call (false: two calls of batch 1).</summary>
    public bool BatchedGuidance => _batched;

    /// <summary>
    /// The request's UNet calls with their tensors bound once (<see cref="BoundDenoiser"/>): <paramref name="text"/> is
    /// written into its bound input here; <paramref name="guided"/>: classifier-free guidance (both halves). With step
    /// caching (this runner made with an interval above 1) the shallow UNet is bound too. The caller owns (disposes) the
    /// result, before the sessions.
    /// </summary>
    public BoundDenoiser Bind(TextEmbeddings text, bool guided) => new(
        _model.Unet,
        _model.Model.UnetPath,
        ("sample", _sample),
        ("timestep", _timestep),
        [new DenoiserCondition("encoder_hidden_states", _hidden, text.Negative, text.Prompt, [1, text.Length, text.Hidden])],
        _output,
        LatentShape,
        guided,
        _batched,
        _feature is null ? null : new ShallowDenoiser(_model.ShallowUnet, _model.Model.ShallowUnetPath, ManifestStepCache.FeatureName,
            _model.Model.StepCache!.FeatureShape(1, LatentShape[2], LatentShape[3])));

    /// <summary>
    /// Guided noise prediction: uncond + g * (text - uncond), each call's tensors created and copied (the per-call path
    /// <see cref="Bind"/>'s is tested against).
    /// </summary>
    /// <param name="cache">This image's step-cache state (null: no caching); the step it is at decides full or shallow.</param>
    public float[] PredictGuided(float[] sample, double t, TextEmbeddings text, float guidance, RunOptions run, StepCacheState? cache = null) =>
        ClassifierFreeGuidance.Predict(
            _batched,
            sample.Length,
            // [2, C, h, w] and [2, L, H]: negative half first, prompt half second (diffusers' order)
            () => Run(ClassifierFreeGuidance.Stack(sample, sample), 2, t, ClassifierFreeGuidance.Stack(text.Negative, text.Prompt), text.Length, text.Hidden, run, cache, StepCacheState.Both),
            () => Run(sample, 1, t, text.Negative, text.Length, text.Hidden, run, cache, StepCacheState.Negative),
            () => Run(sample, 1, t, text.Prompt, text.Length, text.Hidden, run, cache, StepCacheState.Prompt),
            guidance);

    /// <summary>Unguided prediction for a batch of one.</summary>
    public float[] Predict(float[] sample, double t, float[] hidden, int length, int width, RunOptions run, StepCacheState? cache = null) =>
        Run(sample, 1, t, hidden, length, width, run, cache, StepCacheState.Prompt);

    private float[] Run(float[] samples, int batch, double t, float[] hidden, int length, int width, RunOptions run, StepCacheState? cache, int slot)
    {
        bool shallow = cache is not null && !cache.IsFullStep;
        string where = shallow ? _model.Model.ShallowUnetPath : _model.Model.UnetPath;
        var shape = (long[])LatentShape.Clone();
        shape[0] = batch;
        using var sampleValue = OnnxTensors.Floats(_sample, samples, shape, where);
        using var timestepValue = OnnxTensors.Timestep(_timestep, t, batch, where);
        using var hiddenValue = OnnxTensors.Floats(_hidden, hidden, new long[] { batch, length, width }, where);
        float[] result;
        long[] outShape;
        if (cache is null)
        {
            using var outputs = _model.Unet.Run(
                run,
                new[] { "sample", "timestep", "encoder_hidden_states" },
                new[] { sampleValue, timestepValue, hiddenValue },
                new[] { _output });
            result = OnnxTensors.ReadFloats(outputs[0], where, out outShape);
        }
        else if (!shallow)
        {
            // a full step: the prediction and the deep feature the next N - 1 (shallow) steps reuse
            using var outputs = _model.Unet.Run(
                run,
                new[] { "sample", "timestep", "encoder_hidden_states" },
                new[] { sampleValue, timestepValue, hiddenValue },
                new[] { _output, ManifestStepCache.FeatureName });
            result = OnnxTensors.ReadFloats(outputs[0], where, out outShape);
            float[] feature = OnnxTensors.ReadFloats(outputs[1], where, out var featureShape);
            cache.Store(slot, feature, featureShape);
        }
        else
        {
            var (feature, featureShape) = cache.Feature(slot, where);
            using var featureValue = OnnxTensors.Floats(_feature!, feature, featureShape, where);
            using var outputs = _model.ShallowUnet.Run(
                run,
                new[] { "sample", "timestep", "encoder_hidden_states", ManifestStepCache.FeatureName },
                new[] { sampleValue, timestepValue, hiddenValue, featureValue },
                new[] { _output });
            result = OnnxTensors.ReadFloats(outputs[0], where, out outShape);
        }

        if (result.Length != samples.Length)
        {
            throw new InvalidDataException($"{where}: output '{_output}' has shape [{string.Join(", ", outShape)}], expected [{string.Join(", ", shape)}]");
        }

        return result;
    }
}

using CTCal.Export.Graphs;
using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// Calls the SD3 transformer (diffusers SD3Transformer2DModel as Optimum exports it: <c>hidden_states</c>,
/// <c>timestep</c> = sigma x 1000, <c>encoder_hidden_states</c>, <c>pooled_projections</c> -> <c>out_hidden_states</c>,
/// the flow velocity). The unconditional and text halves of classifier-free guidance go in one batch-2 call, or in two
/// batch-1 calls when <c>batchedGuidance</c> is off (memory mode low) or the graph's batch is fixed at 1, as
/// <see cref="UnetRunner"/> does for the UNet.
/// </summary>
internal sealed class TransformerRunner
{
    private readonly InferenceSession _session;
    private readonly string _where;
    private readonly NodeMetadata _sample;
    private readonly NodeMetadata _timestep;
    private readonly NodeMetadata _hidden;
    private readonly NodeMetadata _pooled;
    private readonly string _output;
    private readonly bool _batched;

    public TransformerRunner(ModelSessions model, int width, int height, bool batchedGuidance)
    {
        _session = (model.SD3 ?? throw new InvalidOperationException($"Model '{model.Model.Info.Id}' is not SD3")).Transformer;
        _where = model.Model.TransformerPath;
        _sample = OnnxTensors.Input(_session, SD3TransformerGraph.HiddenStatesInput, _where);
        _timestep = OnnxTensors.Input(_session, SD3TransformerGraph.TimestepInput, _where);
        _hidden = OnnxTensors.Input(_session, SD3TransformerGraph.EncoderHiddenStatesInput, _where);
        _pooled = OnnxTensors.Input(_session, SD3TransformerGraph.PooledProjectionsInput, _where);
        _output = OnnxTensors.OutputName(_session, SD3TransformerGraph.Output);

        int[] dims = _sample.Dimensions;
        if (dims.Length != 4 || dims[1] <= 0)
        {
            throw new InvalidDataException($"{_where}: input '{SD3TransformerGraph.HiddenStatesInput}' is [{string.Join(", ", dims)}], expected [batch, channels, height, width] with fixed channels");
        }

        int[] hiddenDims = _hidden.Dimensions;
        if (hiddenDims.Length != 3 || hiddenDims[2] <= 0)
        {
            throw new InvalidDataException($"{_where}: input '{SD3TransformerGraph.EncoderHiddenStatesInput}' is [{string.Join(", ", hiddenDims)}], expected [batch, sequence, joint_attention_dim] with a fixed width");
        }

        int factor = model.Model.VaeScaleFactor; // pixels per latent cell (8 for SD3's VAE)
        int latentHeight = height / factor, latentWidth = width / factor;
        if (latentHeight * factor != height || latentWidth * factor != width)
        {
            throw new ArgumentException($"{width}x{height} is not a multiple of the VAE scale factor {factor} of {model.Model.Folder}");
        }

        LatentShape = new long[] { 1, dims[1], latentHeight, latentWidth };
        LatentLength = dims[1] * latentHeight * latentWidth;
        JointAttentionDim = hiddenDims[2];
        _batched = batchedGuidance && dims[0] != 1;
    }

    /// <summary>[1, C, H/f, W/f] with C the transformer's in_channels and f the VAE scale factor.</summary>
    public long[] LatentShape { get; }

    public int LatentLength { get; }

    /// <summary>Guidance's two halves go in one batch-2 call (false: two calls of batch 1).</summary>
    public bool BatchedGuidance => _batched;

    /// <summary>The width of <c>encoder_hidden_states</c> (SD3-medium: 4096).</summary>
    public int JointAttentionDim { get; }

    /// <summary>
    /// The request's transformer calls with their tensors bound once (<see cref="BoundDenoiser"/>): <paramref name="text"/>
    /// (sequence and pooled embeddings) is written into its bound inputs here; <paramref name="guided"/>: classifier-free
    /// guidance (both halves). The caller owns (disposes) the result, before the sessions.
    /// </summary>
    public BoundDenoiser Bind(SD3TextEmbeddings text, bool guided) => new(
        _session,
        _where,
        (SD3TransformerGraph.HiddenStatesInput, _sample),
        (SD3TransformerGraph.TimestepInput, _timestep),
        [
            new DenoiserCondition(SD3TransformerGraph.EncoderHiddenStatesInput, _hidden, text.Negative, text.Prompt, [1, text.Length, text.Width]),
            new DenoiserCondition(SD3TransformerGraph.PooledProjectionsInput, _pooled, text.PooledNegative, text.PooledPrompt, [1, text.PooledWidth]),
        ],
        _output,
        LatentShape,
        guided,
        _batched);

    /// <summary>
    /// Guided velocity: uncond + g * (text - uncond), diffusers' order (negative half first), each call's tensors created
    /// and copied (the per-call path <see cref="Bind"/>'s is tested against).
    /// </summary>
    public float[] PredictGuided(float[] sample, double t, SD3TextEmbeddings text, float guidance, RunOptions run) =>
        ClassifierFreeGuidance.Predict(
            _batched,
            sample.Length,
            // [2, C, h, w], [2, S, D], [2, P]: negative then prompt
            () => Run(
                ClassifierFreeGuidance.Stack(sample, sample), 2, t, ClassifierFreeGuidance.Stack(text.Negative, text.Prompt), text.Length, text.Width,
                ClassifierFreeGuidance.Stack(text.PooledNegative, text.PooledPrompt), text.PooledWidth, run),
            () => Run(sample, 1, t, text.Negative, text.Length, text.Width, text.PooledNegative, text.PooledWidth, run),
            () => Predict(sample, t, text, run),
            guidance);

    /// <summary>Unguided velocity (guidance scale &lt;= 1): the prompt half only.</summary>
    public float[] Predict(float[] sample, double t, SD3TextEmbeddings text, RunOptions run) =>
        Run(sample, 1, t, text.Prompt, text.Length, text.Width, text.PooledPrompt, text.PooledWidth, run);

    private float[] Run(float[] samples, int batch, double t, float[] hidden, int length, int width, float[] pooled, int pooledWidth, RunOptions run)
    {
        var shape = (long[])LatentShape.Clone();
        shape[0] = batch;
        using var sampleValue = OnnxTensors.Floats(_sample, samples, shape, _where);
        using var timestepValue = OnnxTensors.Timestep(_timestep, t, batch, _where);
        using var hiddenValue = OnnxTensors.Floats(_hidden, hidden, new long[] { batch, length, width }, _where);
        using var pooledValue = OnnxTensors.Floats(_pooled, pooled, new long[] { batch, pooledWidth }, _where);
        using var outputs = _session.Run(
            run,
            new[] { SD3TransformerGraph.HiddenStatesInput, SD3TransformerGraph.TimestepInput, SD3TransformerGraph.EncoderHiddenStatesInput, SD3TransformerGraph.PooledProjectionsInput },
            new[] { sampleValue, timestepValue, hiddenValue, pooledValue },
            new[] { _output });
        var result = OnnxTensors.ReadFloats(outputs[0], _where, out var outShape);
        if (result.Length != samples.Length)
        {
            throw new InvalidDataException($"{_where}: output '{_output}' has shape [{string.Join(", ", outShape)}], expected [{string.Join(", ", shape)}] (out_channels must equal in_channels)");
        }

        return result;
    }
}

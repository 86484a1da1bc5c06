using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>A conditioning input of a denoiser (UNet <c>encoder_hidden_states</c>; SD3 also <c>pooled_projections</c>): both prompts' rows, each of batch 1.</summary>
/// <param name="Shape">The batch-1 shape, e.g. [1, L, H]; a batch-2 binding doubles its first dimension.</param>
internal sealed record DenoiserCondition(string Name, NodeMetadata Meta, float[] Negative, float[] Prompt, long[] Shape);

/// <summary>
/// Step caching's shallow UNet (<see cref="StepCaching"/>), bound beside the full one: the full graph's
/// <paramref name="Feature"/> output and the shallow graph's input of that name are one tensor per call, so a shallow step
/// reads what the last full step wrote without a copy.
/// </summary>
/// <param name="FeatureShape">The batch-1 feature shape [1, C, h, w]; a batch-2 binding doubles its first dimension.</param>
internal sealed record ShallowDenoiser(InferenceSession Session, string Where, string Feature, long[] FeatureShape);

/// <summary>
/// One request's denoiser calls through ONNX Runtime I/O binding (<see cref="OrtIoBinding"/>, ONNX Runtime's
/// <c>OrtIoBinding</c> / <c>RunWithBinding</c>): every input and output tensor of the sampler loop is allocated once,
/// bound once, and reused by every step and every image of the request, so a step copies the scaled latents in (both
/// guidance halves), writes the timestep, runs, and combines the guidance from the bound output, with no per-step
/// tensor or array allocation. The conditioning (text embeddings) is written once, at construction.
/// <para>
/// Calls follow the request's guidance: one batch-2 call with the halves stacked [negative; prompt] (diffusers' order),
/// two batch-1 calls (one binding per half, sharing the sample and timestep tensors) when the memory mode splits the
/// guidance or the graph's batch is fixed at 1, or one batch-1 call of the prompt half without guidance. The result is
/// bitwise the one of the per-call path (<see cref="UnetRunner.PredictGuided"/>): same tensors, same ONNX Runtime
/// allocator (alignment), same fp16 conversions, same guidance arithmetic.
/// </para>
/// <para>
/// With a <see cref="ShallowDenoiser"/> (step caching), each call has a second binding on the shallow session over the
/// same sample, timestep, conditioning and output tensors, and the feature tensor the full call's binding writes is the
/// shallow call's input; <see cref="Predict"/>'s <c>shallow</c> picks the bindings.
/// </para>
/// <para>
/// Ownership: this object owns the bound <see cref="OrtValue"/>s, the <see cref="OrtIoBinding"/>s and the
/// <see cref="Input"/> and output arrays, and disposes them; the caller owns the session and must dispose this before
/// it (the pipelines hold it in a <c>using</c> for the request). <see cref="Input"/> and the span
/// <see cref="Predict"/> returns are valid until the next call. Not thread-safe: one request's loop uses it.
/// </para>
/// </summary>
internal sealed class BoundDenoiser : IDisposable
{
    private readonly InferenceSession _session;
    private readonly InferenceSession? _shallowSession;
    private readonly string _where;
    private readonly int _length;
    private readonly bool _guided;
    private readonly List<OrtValue> _values = new();
    private readonly List<OrtIoBinding> _bindings = new();
    private readonly List<OrtIoBinding> _shallowBindings = new();
    private readonly OrtValue _sample;
    private readonly OrtValue _timestep;
    private readonly OrtValue[] _outputs;
    private readonly float[] _uncond;
    private readonly float[] _result;

    /// <param name="latentShape">The batch-1 latent shape [1, C, h, w] of the sample input and the output.</param>
    /// <param name="guided">Classifier-free guidance (scale &gt; 1): both halves; otherwise the prompt half only.</param>
    /// <param name="batched">Both halves in one batch-2 call (ignored without guidance).</param>
    /// <param name="shallow">Step caching's shallow UNet, or null.</param>
    public BoundDenoiser(
        InferenceSession session,
        string where,
        (string Name, NodeMetadata Meta) sample,
        (string Name, NodeMetadata Meta) timestep,
        IReadOnlyList<DenoiserCondition> conditions,
        string output,
        long[] latentShape,
        bool guided,
        bool batched,
        ShallowDenoiser? shallow = null)
    {
        _session = session;
        _shallowSession = shallow?.Session;
        _where = where;
        _guided = guided;
        _length = checked((int)latentShape.Aggregate(1L, (a, b) => a * b));
        Input = new float[_length];
        _uncond = new float[_length];
        _result = new float[_length];
        try
        {
            int batch = guided && batched ? 2 : 1;
            var shape = (long[])latentShape.Clone();
            shape[0] = batch; // [batch, C, h, w]
            _sample = Own(OnnxTensors.Allocate(sample.Meta, shape, where));
            _timestep = Own(OnnxTensors.Allocate(timestep.Meta, OnnxTensors.TimestepShape(timestep.Meta, batch, where), where));
            var outputMeta = session.OutputMetadata[output];
            CheckOutput(outputMeta, shape, output);
            NodeMetadata? featureMeta = null;
            long[]? featureShape = null;
            if (shallow is not null)
            {
                featureMeta = session.OutputMetadata[shallow.Feature];
                featureShape = (long[])shallow.FeatureShape.Clone();
                featureShape[0] = batch; // [batch, C, h, w]
                CheckOutput(featureMeta, featureShape, shallow.Feature);
                var input = shallow.Session.InputMetadata[shallow.Feature];
                if (input.ElementDataType != featureMeta.ElementDataType)
                {
                    throw new InvalidDataException(
                        $"{shallow.Where}: input '{shallow.Feature}' is {input.ElementDataType}, but {where} outputs it as {featureMeta.ElementDataType}; export the model again");
                }
            }

            // (conditions, output) per call: [negative; prompt] stacked, or each half alone, or the prompt half
            IEnumerable<Func<DenoiserCondition, float[][]>> calls = !guided ? [c => [c.Prompt]]
                : batched ? [c => [c.Negative, c.Prompt]]
                : [c => [c.Negative], c => [c.Prompt]];
            var outputs = new List<OrtValue>();
            foreach (var rows in calls)
            {
                var binding = _session.CreateIoBinding();
                _bindings.Add(binding);
                var shallowBinding = shallow?.Session.CreateIoBinding();
                if (shallowBinding is not null)
                {
                    _shallowBindings.Add(shallowBinding);
                }

                binding.BindInput(sample.Name, _sample);
                binding.BindInput(timestep.Name, _timestep);
                shallowBinding?.BindInput(sample.Name, _sample);
                shallowBinding?.BindInput(timestep.Name, _timestep);
                foreach (var condition in conditions)
                {
                    float[][] halves = rows(condition);
                    var conditionShape = (long[])condition.Shape.Clone();
                    conditionShape[0] = halves.Length; // [batch, ...]
                    var value = Own(OnnxTensors.Allocate(condition.Meta, conditionShape, where));
                    int offset = 0;
                    foreach (float[] half in halves)
                    {
                        OnnxTensors.WriteFloats(value, half, offset, where);
                        offset += half.Length;
                    }

                    binding.BindInput(condition.Name, value);
                    shallowBinding?.BindInput(condition.Name, value);
                }

                var result = Own(OnnxTensors.Allocate(outputMeta, shape, where));
                binding.BindOutput(output, result);
                outputs.Add(result);
                if (shallowBinding is not null)
                {
                    // the full call writes the feature, the shallow calls after it read the same tensor
                    var feature = Own(OnnxTensors.Allocate(featureMeta!, featureShape!, where));
                    binding.BindOutput(shallow!.Feature, feature);
                    shallowBinding.BindInput(shallow.Feature, feature);
                    shallowBinding.BindOutput(output, result);
                }
            }

            _outputs = outputs.ToArray();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Where the caller writes the step's model input (the scaled latents, [1, C, h, w]) before <see cref="Predict"/>.</summary>
    public float[] Input { get; }

    /// <summary>
    /// Runs the denoiser on <see cref="Input"/> at timestep <paramref name="t"/> and returns the guided prediction
    /// uncond + g (text - uncond) (the prompt half's without guidance), in an array this object owns and overwrites on
    /// the next call.
    /// </summary>
    /// <param name="shallow">A step-cache shallow step: runs the shallow UNet on the feature of the last full step (which
    /// this object must have run before, with the same guidance halves).</param>
    public float[] Predict(double t, float guidance, RunOptions run, bool shallow = false)
    {
        if (shallow && _shallowBindings.Count == 0)
        {
            throw new InvalidOperationException($"{_where}: a shallow step asked of a denoiser bound without the step-cache graph");
        }

        OnnxTensors.WriteFloats(_sample, Input, 0, _where);
        if (_bindings.Count == 1 && _guided)
        {
            OnnxTensors.WriteFloats(_sample, Input, _length, _where); // both halves see the same latents
        }

        OnnxTensors.WriteTimestep(_timestep, t, _where);
        if (shallow)
        {
            foreach (var binding in _shallowBindings)
            {
                _shallowSession!.RunWithBinding(run, binding);
            }
        }
        else
        {
            foreach (var binding in _bindings)
            {
                _session.RunWithBinding(run, binding);
            }
        }

        if (!_guided)
        {
            OnnxTensors.ReadFloats(_outputs[0], 0, _result, _where);
            return _result;
        }

        // uncond: the negative half (first of the batch-2 output, or the first call's output), text: the prompt half
        bool batched = _outputs.Length == 1;
        OnnxTensors.ReadFloats(_outputs[0], 0, _uncond, _where);
        OnnxTensors.ReadFloats(batched ? _outputs[0] : _outputs[1], batched ? _length : 0, _result, _where);
        ClassifierFreeGuidance.Combine(_uncond, _result, guidance);
        return _result;
    }

    public void Dispose()
    {
        foreach (var binding in _bindings.Concat(_shallowBindings))
        {
            binding.Dispose();
        }

        _shallowBindings.Clear();
        foreach (var value in _values)
        {
            value.Dispose();
        }

        _bindings.Clear();
        _values.Clear();
    }

    private OrtValue Own(OrtValue value)
    {
        _values.Add(value);
        return value;
    }

    /// <summary>A declared output shape that cannot hold the prediction is refused here, naming the graph, not by the bound run.</summary>
    private void CheckOutput(NodeMetadata meta, long[] shape, string output)
    {
        int[] dims = meta.Dimensions;
        bool fits = dims.Length == shape.Length && dims.Zip(shape).All(d => d.First <= 0 || d.First == d.Second);
        if (!fits)
        {
            throw new InvalidDataException(
                $"{_where}: output '{output}' is declared [{string.Join(", ", dims)}], expected [{string.Join(", ", shape)}] (out_channels must equal in_channels)");
        }
    }
}

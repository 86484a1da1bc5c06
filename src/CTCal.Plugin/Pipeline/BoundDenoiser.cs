using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>A conditioning input of a denoiser (UNet <c>encoder_hidden_states</c>; SD3 also <c>pooled_projections</c>): both prompts' rows, each of batch 1.</summary>
/// <param name="Shape">The batch-1 shape, e.g. [1, L, H]; a batch-2 binding doubles its first dimension.</param>
internal sealed record DenoiserCondition(string Name, NodeMetadata Meta, float[] Negative, float[] Prompt, long[] Shape);

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
/// Ownership: this object owns the bound <see cref="OrtValue"/>s, the <see cref="OrtIoBinding"/>s and the
/// <see cref="Input"/> and output arrays, and disposes them; the caller owns the session and must dispose this before
/// it (the pipelines hold it in a <c>using</c> for the request). <see cref="Input"/> and the span
/// <see cref="Predict"/> returns are valid until the next call. Not thread-safe: one request's loop uses it.
/// </para>
/// </summary>
internal sealed class BoundDenoiser : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string _where;
    private readonly int _length;
    private readonly bool _guided;
    private readonly List<OrtValue> _values = new();
    private readonly List<OrtIoBinding> _bindings = new();
    private readonly OrtValue _sample;
    private readonly OrtValue _timestep;
    private readonly OrtValue[] _outputs;
    private readonly float[] _uncond;
    private readonly float[] _result;

    /// <param name="latentShape">The batch-1 latent shape [1, C, h, w] of the sample input and the output.</param>
    /// <param name="guided">Classifier-free guidance (scale &gt; 1): both halves; otherwise the prompt half only.</param>
    /// <param name="batched">Both halves in one batch-2 call (ignored without guidance).</param>
    public BoundDenoiser(
        InferenceSession session,
        string where,
        (string Name, NodeMetadata Meta) sample,
        (string Name, NodeMetadata Meta) timestep,
        IReadOnlyList<DenoiserCondition> conditions,
        string output,
        long[] latentShape,
        bool guided,
        bool batched)
    {
        _session = session;
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

            // (conditions, output) per call: [negative; prompt] stacked, or each half alone, or the prompt half
            IEnumerable<Func<DenoiserCondition, float[][]>> calls = !guided ? [c => [c.Prompt]]
                : batched ? [c => [c.Negative, c.Prompt]]
                : [c => [c.Negative], c => [c.Prompt]];
            var outputs = new List<OrtValue>();
            foreach (var rows in calls)
            {
                var binding = _session.CreateIoBinding();
                _bindings.Add(binding);
                binding.BindInput(sample.Name, _sample);
                binding.BindInput(timestep.Name, _timestep);
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
                }

                var result = Own(OnnxTensors.Allocate(outputMeta, shape, where));
                binding.BindOutput(output, result);
                outputs.Add(result);
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
    public float[] Predict(double t, float guidance, RunOptions run)
    {
        OnnxTensors.WriteFloats(_sample, Input, 0, _where);
        if (_bindings.Count == 1 && _guided)
        {
            OnnxTensors.WriteFloats(_sample, Input, _length, _where); // both halves see the same latents
        }

        OnnxTensors.WriteTimestep(_timestep, t, _where);
        foreach (var binding in _bindings)
        {
            _session.RunWithBinding(run, binding);
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
        foreach (var binding in _bindings)
        {
            binding.Dispose();
        }

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

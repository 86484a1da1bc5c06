using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace CTCal.Plugin.Onnx;

/// <summary>
/// Creates inputs in whatever element type and rank a model declares (exporters differ: <c>input_ids</c> int32 or
/// int64; <c>timestep</c> int64 [batch], float [1] or a float scalar; fp16 or fp32 tensors) and reads outputs back as
/// float. Every returned <see cref="OrtValue"/> is owned by the caller, who must dispose it.
/// Inputs are copied into buffers that ONNX Runtime allocates (aligned the same way every time) rather than pinned
/// managed arrays: some CPU kernels pick their vector loop split by address alignment, which would otherwise let the
/// last bit of a result depend on where the garbage collector placed an array, and the same request could give a
/// different image under concurrent load.
/// </summary>
internal static class OnnxTensors
{
    /// <summary>The metadata of input <paramref name="name"/>, or a clear error naming the model file.</summary>
    public static NodeMetadata Input(InferenceSession session, string name, string modelPath)
    {
        if (session.InputMetadata.TryGetValue(name, out var meta))
        {
            return meta;
        }

        throw new InvalidDataException(
            $"{modelPath}: has no input '{name}' (inputs: {string.Join(", ", session.InputMetadata.Keys)})");
    }

    /// <summary>Token ids [batch, length] as int32 or int64, as the model's input declares.</summary>
    public static OrtValue TokenIds(NodeMetadata meta, ReadOnlySpan<int> ids, int batch, string what)
    {
        long[] shape = { batch, ids.Length / batch };
        switch (meta.ElementDataType)
        {
            case TensorElementType.Int32:
                return Allocated(ids.ToArray(), shape);
            case TensorElementType.Int64:
                var longs = new long[ids.Length];
                for (int i = 0; i < ids.Length; i++)
                {
                    longs[i] = ids[i];
                }

                return Allocated(longs, shape);
            default:
                throw new InvalidDataException($"{what}: token ids of type {meta.ElementDataType} are not supported (int32 or int64 expected)");
        }
    }

    /// <summary>
    /// The diffusion timestep, shaped as the model declares: a scalar (rank 0), <c>[1]</c>, or <c>[batch]</c>
    /// (a dynamic first dimension means batch); int64/int32 types get the timestep rounded.
    /// </summary>
    public static OrtValue Timestep(NodeMetadata meta, double t, int batch, string what)
    {
        var value = Allocate(meta, TimestepShape(meta, batch, what), what);
        try
        {
            WriteTimestep(value, t, what);
            return value;
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    /// <summary>The shape <see cref="Timestep"/> gives a timestep input: <c>[]</c>, <c>[1]</c> or <c>[batch]</c>.</summary>
    public static long[] TimestepShape(NodeMetadata meta, int batch, string what) => meta.Dimensions.Length switch
    {
        0 => Array.Empty<long>(),
        1 => new long[] { meta.Dimensions[0] == 1 ? 1 : batch },
        _ => throw new InvalidDataException($"{what}: timestep of rank {meta.Dimensions.Length} is not supported (scalar, [1] or [batch] expected)"),
    };

    /// <summary>Fills every element of a timestep tensor with <paramref name="t"/> (rounded for int64/int32), in place.</summary>
    public static void WriteTimestep(OrtValue value, double t, string what)
    {
        switch (value.GetTensorTypeAndShape().ElementDataType)
        {
            case TensorElementType.Int64:
                value.GetTensorMutableDataAsSpan<long>().Fill((long)Math.Round(t));
                break;
            case TensorElementType.Int32:
                value.GetTensorMutableDataAsSpan<int>().Fill((int)Math.Round(t));
                break;
            case TensorElementType.Float:
                value.GetTensorMutableDataAsSpan<float>().Fill((float)t);
                break;
            case TensorElementType.Double:
                value.GetTensorMutableDataAsSpan<double>().Fill(t);
                break;
            case TensorElementType.Float16:
                value.GetTensorMutableDataAsSpan<Float16>().Fill((Float16)(float)t);
                break;
            default:
                throw new InvalidDataException($"{what}: timestep of type {value.GetTensorTypeAndShape().ElementDataType} is not supported");
        }
    }

    /// <summary>
    /// A tensor of the element type <paramref name="meta"/> declares (float, float16, double, int64 or int32) and the
    /// given shape, uninitialized, in memory owned by ONNX Runtime's default allocator; the caller owns (disposes) it.
    /// </summary>
    public static OrtValue Allocate(NodeMetadata meta, long[] shape, string what)
    {
        var type = meta.ElementDataType;
        if (type is not (TensorElementType.Float or TensorElementType.Float16 or TensorElementType.Double or TensorElementType.Int64 or TensorElementType.Int32))
        {
            throw new InvalidDataException($"{what}: tensors of type {type} are not supported");
        }

        return OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape);
    }

    /// <summary>
    /// Copies <paramref name="data"/> into a float or fp16 tensor from element <paramref name="offset"/> on, converting to
    /// fp16 as <see cref="Floats"/> does.
    /// </summary>
    public static void WriteFloats(OrtValue value, ReadOnlySpan<float> data, int offset, string what)
    {
        switch (value.GetTensorTypeAndShape().ElementDataType)
        {
            case TensorElementType.Float:
                data.CopyTo(value.GetTensorMutableDataAsSpan<float>()[offset..]);
                break;
            case TensorElementType.Float16:
                var halves = value.GetTensorMutableDataAsSpan<Float16>().Slice(offset, data.Length);
                for (int i = 0; i < data.Length; i++)
                {
                    halves[i] = (Float16)data[i];
                }

                break;
            default:
                throw new InvalidDataException($"{what}: input of type {value.GetTensorTypeAndShape().ElementDataType} is not supported (float or float16 expected)");
        }
    }

    /// <summary>Copies <paramref name="target"/>.Length values of a float or fp16 tensor, from element <paramref name="offset"/> on, as floats.</summary>
    public static void ReadFloats(OrtValue value, int offset, Span<float> target, string what)
    {
        switch (value.GetTensorTypeAndShape().ElementDataType)
        {
            case TensorElementType.Float:
                value.GetTensorDataAsSpan<float>().Slice(offset, target.Length).CopyTo(target);
                break;
            case TensorElementType.Float16:
                var halves = value.GetTensorDataAsSpan<Float16>().Slice(offset, target.Length);
                for (int i = 0; i < target.Length; i++)
                {
                    target[i] = (float)halves[i];
                }

                break;
            default:
                throw new InvalidDataException($"{what}: output of type {value.GetTensorTypeAndShape().ElementDataType} is not supported (float or float16 expected)");
        }
    }

    /// <summary>A float tensor, converted to fp16 when the model's input is fp16 (<see cref="WriteFloats"/>).</summary>
    public static OrtValue Floats(NodeMetadata meta, float[] data, long[] shape, string what)
    {
        if (meta.ElementDataType is not (TensorElementType.Float or TensorElementType.Float16))
        {
            throw new InvalidDataException($"{what}: input of type {meta.ElementDataType} is not supported (float or float16 expected)");
        }

        var value = Allocate(meta, shape, what);
        try
        {
            WriteFloats(value, data, 0, what);
            return value;
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    /// <summary>Copies a float or fp16 output into a new float array (<see cref="ReadFloats(OrtValue, int, Span{float}, string)"/>) and returns its shape.</summary>
    public static float[] ReadFloats(OrtValue value, string what, out long[] shape)
    {
        var info = value.GetTensorTypeAndShape();
        shape = info.Shape;
        var floats = new float[info.ElementCount];
        ReadFloats(value, 0, floats, what);
        return floats;
    }

    /// <summary>The output named <paramref name="preferred"/>, or the model's first output.</summary>
    public static string OutputName(InferenceSession session, params string[] preferred)
    {
        foreach (string name in preferred)
        {
            if (session.OutputMetadata.ContainsKey(name))
            {
                return name;
            }
        }

        return session.OutputNames[0];
    }

    /// <summary>A tensor in memory owned by ONNX Runtime's default allocator, holding a copy of <paramref name="data"/>.</summary>
    private static OrtValue Allocated<T>(T[] data, long[] shape)
        where T : unmanaged
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, ElementType<T>(), shape);
        try
        {
            data.AsSpan().CopyTo(value.GetTensorMutableDataAsSpan<T>());
            return value;
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    private static TensorElementType ElementType<T>() =>
        typeof(T) == typeof(float) ? TensorElementType.Float
        : typeof(Float16) == typeof(T) ? TensorElementType.Float16
        : typeof(T) == typeof(double) ? TensorElementType.Double
        : typeof(T) == typeof(long) ? TensorElementType.Int64
        : typeof(T) == typeof(int) ? TensorElementType.Int32
        : throw new NotSupportedException($"tensor element type {typeof(T).Name}");
}

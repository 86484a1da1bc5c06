using System.Runtime.InteropServices;
using CTCal.Core.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>Saves and loads named TorchSharp tensors as safetensors (F32, F64, I64, U8 kept as is; F16/BF16 read as F32).</summary>
public static class TensorFile
{
    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically (temp file + rename), in the given order.
    /// An I/O failure (read-only folder, full disk, a folder in the way) throws <see cref="OutputWriteException"/> naming the file.
    /// </summary>
    public static void Save(string path, IEnumerable<(string Name, Tensor Value)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = new List<SafetensorsWriteEntry>();
        foreach (var (name, value) in tensors)
        {
            var cpu = value.detach().cpu().contiguous();
            long[] shape = cpu.shape.ToArray();
            switch (cpu.dtype)
            {
                case ScalarType.Float32:
                    entries.Add(SafetensorsWriteEntry.FromFloat32(name, shape, cpu.data<float>().ToArray()));
                    break;
                case ScalarType.Float64:
                    entries.Add(SafetensorsWriteEntry.FromBytes(name, SafetensorsDType.F64, shape, MemoryMarshal.AsBytes(cpu.data<double>().ToArray().AsSpan()).ToArray()));
                    break;
                case ScalarType.Int64:
                    entries.Add(SafetensorsWriteEntry.FromBytes(name, SafetensorsDType.I64, shape, MemoryMarshal.AsBytes(cpu.data<long>().ToArray().AsSpan()).ToArray()));
                    break;
                case ScalarType.Byte:
                    entries.Add(SafetensorsWriteEntry.FromBytes(name, SafetensorsDType.U8, shape, cpu.data<byte>().ToArray()));
                    break;
                default:
                    entries.Add(SafetensorsWriteEntry.FromFloat32(name, shape, cpu.to(ScalarType.Float32).data<float>().ToArray()));
                    break;
            }
        }
        try
        {
            SafetensorsWriter.Write(path, entries, metadata);
        }
        catch (SafetensorsException e) when (e.InnerException is IOException or UnauthorizedAccessException)
        {
            // The writer removed its temporary file; whatever was under the final name is untouched.
            throw new OutputWriteException(path, $"cannot write the file ({e.InnerException.Message})", e);
        }
    }

    /// <summary>Reads every tensor of <paramref name="path"/> (CPU tensors, detached from any dispose scope; the caller disposes).</summary>
    public static Dictionary<string, Tensor> Load(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        using var file = SafetensorsFile.Open(path);
        metadata = new Dictionary<string, string>(file.Metadata);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var info in file.Tensors)
        {
            Tensor t = info.DType switch
            {
                SafetensorsDType.I64 => tensor(file.ReadAsInt64(info.Name), info.Shape),
                SafetensorsDType.U8 => tensor(file.GetBytes(info.Name).ToArray(), info.Shape),
                SafetensorsDType.F64 => tensor(MemoryMarshal.Cast<byte, double>(file.GetBytes(info.Name)).ToArray(), info.Shape),
                _ when info.DType.IsFloatingPoint() => tensor(file.ReadAsFloat32(info.Name), info.Shape),
                _ => throw new InvalidDataException($"{path}: tensor '{info.Name}' has dtype {info.DType.ToHeaderName()}, which this trainer does not read"),
            };
            result[info.Name] = t.DetachFromDisposeScope();
        }
        return result;
    }

    public static Dictionary<string, Tensor> Load(string path) => Load(path, out _);
}

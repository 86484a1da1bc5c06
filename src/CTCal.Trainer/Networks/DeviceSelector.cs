using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// Picks the compute device and the dtype of frozen model parts. Trainable parameters always stay fp32 (TorchSharp has
/// no autocast); the frozen VAE and text encoder may run in fp16/bf16 on a GPU.
/// </summary>
public static class DeviceSelector
{
    /// <summary>
    /// <paramref name="requested"/>: null or "auto" (CUDA when <c>torch.cuda.is_available()</c>, else CPU), "cpu", "cuda" or "cuda:N".
    /// </summary>
    /// <exception cref="ArgumentException">an unknown name, or CUDA requested where it is not available.</exception>
    public static Device Select(string? requested = null)
    {
        string r = (requested ?? "auto").Trim().ToLowerInvariant();
        if (r == "auto") return cuda.is_available() ? CUDA : CPU;
        if (r == "cpu") return CPU;
        if (r == "cuda" || r.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new ArgumentException($"device '{requested}' requested but CUDA is not available (CPU-only libtorch or no GPU); use 'cpu' or 'auto'", nameof(requested));
            if (r == "cuda") return CUDA;
            if (!int.TryParse(r.AsSpan(5), out int index) || index < 0 || index >= cuda.device_count())
                throw new ArgumentException($"device '{requested}': index must be 0..{cuda.device_count() - 1}", nameof(requested));
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"unknown device '{requested}' (use auto, cpu, cuda or cuda:N)", nameof(requested));
    }

    /// <summary>
    /// dtype for frozen parts: <paramref name="requested"/> "fp32", "fp16", "bf16", or null/"auto" (fp16 on CUDA, fp32 on CPU).
    /// fp16 is refused on CPU, where libtorch lacks half-precision kernels for several layers.
    /// </summary>
    public static ScalarType FrozenDType(Device device, string? requested = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        string r = (requested ?? "auto").Trim().ToLowerInvariant();
        var dtype = r switch
        {
            "auto" => device.type == DeviceType.CUDA ? ScalarType.Float16 : ScalarType.Float32,
            "fp32" or "float32" => ScalarType.Float32,
            "fp16" or "float16" => ScalarType.Float16,
            "bf16" or "bfloat16" => ScalarType.BFloat16,
            _ => throw new ArgumentException($"unknown dtype '{requested}' (use auto, fp32, fp16 or bf16)", nameof(requested)),
        };
        if (dtype == ScalarType.Float16 && device.type == DeviceType.CPU)
            throw new ArgumentException("fp16 is not supported on the CPU; use fp32 or bf16", nameof(requested));
        return dtype;
    }
}

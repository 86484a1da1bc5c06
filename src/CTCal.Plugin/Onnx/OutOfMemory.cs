using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Onnx;

/// <summary>
/// Tells an allocation failure from other errors. ONNX Runtime reports one as an <see cref="OnnxRuntimeException"/>
/// whose text carries the allocator's message: its CPU arena's "Failed to allocate memory for requested buffer of size
/// N" when the system refuses and "Available memory of A is smaller than requested bytes of N" at a <c>memoryLimitMiB</c> cap, "std::bad_alloc" without the arena
/// (<c>memoryMode</c> low), CUDA's "out of memory" / "CUDNN_STATUS_ALLOC_FAILED", DirectML's E_OUTOFMEMORY (0x8007000E).
/// </summary>
internal static partial class OutOfMemory
{
    private static readonly string[] Signatures =
    {
        "Failed to allocate memory",
        "Available memory of",
        "bad_alloc",
        "out of memory",
        "E_OUTOFMEMORY",
        "8007000E",
        "STATUS_ALLOC_FAILED",
    };

    /// <summary>Whether <paramref name="ex"/> says that memory ran out (a managed array too large counts too).</summary>
    public static bool Is(Exception ex) =>
        ex is OutOfMemoryException
        || (ex is OnnxRuntimeException && Signatures.Any(s => ex.Message.Contains(s, StringComparison.OrdinalIgnoreCase)));

    /// <summary>
    /// A short account of what ONNX Runtime failed to allocate ("a buffer of 1024.0 MiB in node 'x'"), without its source
    /// locations; the allocator's words when the size is not given.
    /// </summary>
    public static string Describe(Exception ex)
    {
        if (ex is OutOfMemoryException)
        {
            return "a .NET array was too large";
        }

        string text = ex.Message;
        var size = BufferSize().Match(text);
        var node = NodeName().Match(text);
        string where = node.Success ? $" in node '{node.Groups[1].Value}'" : "";
        if (size.Success && ulong.TryParse(size.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out ulong bytes))
        {
            return $"ONNX Runtime could not allocate a buffer of {Size(bytes)}{where}";
        }

        string signature = Signatures.First(s => text.Contains(s, StringComparison.OrdinalIgnoreCase));
        return $"ONNX Runtime reported '{signature}'{where}";
    }

    /// <summary>Bytes in KiB, MiB or GiB, one decimal.</summary>
    public static string Size(ulong bytes) => bytes switch
    {
        < 1UL << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        < 1UL << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024.0):F1} MiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024.0 * 1024.0):F1} GiB"),
    };

    [GeneratedRegex(@"(?:requested buffer of size|requested bytes of) (\d+)", RegexOptions.CultureInvariant)]
    private static partial Regex BufferSize();

    [GeneratedRegex(@"Name:'([^']*)'", RegexOptions.CultureInvariant)]
    private static partial Regex NodeName();
}

namespace CTCal.Core.Safetensors;

/// <summary>
/// The one exception type of the safetensors reader and writer: a malformed or unreadable file, a missing tensor,
/// a tensor that cannot be converted as asked, or a write entry that does not match its declared size.
/// The message names the file and, when one is at fault, the tensor.
/// </summary>
public sealed class SafetensorsException : Exception
{
    public SafetensorsException(string file, string? tensor, string message, Exception? inner = null)
        : base(tensor is null ? $"{file}: {message}" : $"{file}: tensor '{tensor}': {message}", inner)
    {
        File = file;
        Tensor = tensor;
    }

    /// <summary>The file being read or written.</summary>
    public string File { get; }

    /// <summary>The tensor at fault, or null when the problem is not tied to one tensor.</summary>
    public string? Tensor { get; }
}

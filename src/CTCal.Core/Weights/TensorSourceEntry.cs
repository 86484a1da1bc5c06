using CTCal.Core.Safetensors;

namespace CTCal.Core.Weights;

/// <summary>
/// One tensor of a <see cref="TensorSource"/> under its diffusers name: its dtype and shape as the consumer sees it, and
/// where its data lives: the file, the key inside it, and the element at which it starts (non-zero for one part of a
/// fused tensor such as OpenCLIP's q/k/v in-projection). The data is always one contiguous run of the stored tensor, so
/// a 1x1 conv weight read as a linear one, or one third of a fused projection, is read without copying the rest.
/// </summary>
/// <param name="Name">The diffusers name (what a consumer asks for).</param>
/// <param name="DType">The stored element type.</param>
/// <param name="Shape">The shape under <paramref name="Name"/> (may differ from the stored shape by trailing 1s or a split first axis).</param>
/// <param name="File">The safetensors file that holds the data.</param>
/// <param name="Key">The tensor's key inside <paramref name="File"/>.</param>
/// <param name="ElementOffset">The first element of this tensor inside the stored one.</param>
public sealed record TensorSourceEntry(string Name, SafetensorsDType DType, long[] Shape, string File, string Key, long ElementOffset)
{
    /// <summary>Number of elements (1 for a scalar).</summary>
    public long ElementCount => SafetensorsDTypes.ElementCount(Shape);

    /// <summary>Where the data lives, for messages: <c>'file' key 'k'</c> (with the element offset when it is a slice).</summary>
    public string Location => ElementOffset == 0 && Key == Name
        ? $"'{File}'"
        : ElementOffset == 0 ? $"'{File}' key '{Key}'" : $"'{File}' key '{Key}' from element {ElementOffset}";
}

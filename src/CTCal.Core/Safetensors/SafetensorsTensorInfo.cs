namespace CTCal.Core.Safetensors;

/// <summary>
/// One header entry. <see cref="DataStart"/>/<see cref="DataEnd"/> are byte offsets relative to the start of the
/// data section (the byte after the header), exactly as written in <c>data_offsets</c>.
/// </summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, long[] Shape, long DataStart, long DataEnd)
{
    /// <summary>Number of elements (1 for a scalar with shape []).</summary>
    public long ElementCount => SafetensorsDTypes.ElementCount(Shape);

    /// <summary>Bytes of the tensor's data: <c>DataEnd - DataStart</c> (the reader checks it equals ElementCount x element size).</summary>
    public long ByteLength => DataEnd - DataStart;
}

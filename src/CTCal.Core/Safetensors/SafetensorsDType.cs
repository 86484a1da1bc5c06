namespace CTCal.Core.Safetensors;

/// <summary>Element types of the safetensors format, named as in the header's <c>"dtype"</c> field.</summary>
public enum SafetensorsDType
{
    BOOL,
    U8,
    I8,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

/// <summary>Sizes and header names of <see cref="SafetensorsDType"/>.</summary>
public static class SafetensorsDTypes
{
    /// <summary>Bytes per element (BOOL is one byte).</summary>
    public static int SizeInBytes(this SafetensorsDType t) => t switch
    {
        SafetensorsDType.BOOL or SafetensorsDType.U8 or SafetensorsDType.I8 => 1,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 4,
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "not a safetensors dtype"),
    };

    /// <summary>The name written in the header (<c>"F32"</c>, <c>"BF16"</c>, ...).</summary>
    public static string ToHeaderName(this SafetensorsDType t) => t switch
    {
        SafetensorsDType.BOOL => "BOOL",
        SafetensorsDType.U8 => "U8",
        SafetensorsDType.I8 => "I8",
        SafetensorsDType.I16 => "I16",
        SafetensorsDType.U16 => "U16",
        SafetensorsDType.F16 => "F16",
        SafetensorsDType.BF16 => "BF16",
        SafetensorsDType.I32 => "I32",
        SafetensorsDType.U32 => "U32",
        SafetensorsDType.F32 => "F32",
        SafetensorsDType.F64 => "F64",
        SafetensorsDType.I64 => "I64",
        SafetensorsDType.U64 => "U64",
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "not a safetensors dtype"),
    };

    /// <summary>Parses a header dtype name; exact, case-sensitive match as the format requires.</summary>
    public static bool TryParse(string name, out SafetensorsDType t)
    {
        switch (name)
        {
            case "BOOL": t = SafetensorsDType.BOOL; return true;
            case "U8": t = SafetensorsDType.U8; return true;
            case "I8": t = SafetensorsDType.I8; return true;
            case "I16": t = SafetensorsDType.I16; return true;
            case "U16": t = SafetensorsDType.U16; return true;
            case "F16": t = SafetensorsDType.F16; return true;
            case "BF16": t = SafetensorsDType.BF16; return true;
            case "I32": t = SafetensorsDType.I32; return true;
            case "U32": t = SafetensorsDType.U32; return true;
            case "F32": t = SafetensorsDType.F32; return true;
            case "F64": t = SafetensorsDType.F64; return true;
            case "I64": t = SafetensorsDType.I64; return true;
            case "U64": t = SafetensorsDType.U64; return true;
            default: t = default; return false;
        }
    }

    /// <summary>True for F16, BF16, F32 and F64.</summary>
    public static bool IsFloatingPoint(this SafetensorsDType t) =>
        t is SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F32 or SafetensorsDType.F64;

    /// <summary>Product of <paramref name="shape"/> (1 for a scalar, shape []), with overflow checks.</summary>
    /// <exception cref="ArgumentException">a dimension is negative.</exception>
    /// <exception cref="OverflowException">the product does not fit in a long.</exception>
    public static long ElementCount(ReadOnlySpan<long> shape)
    {
        long n = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0) throw new ArgumentException($"dimension {i} is negative ({shape[i]})", nameof(shape));
            n = checked(n * shape[i]);
        }
        return n;
    }
}

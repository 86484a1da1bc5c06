using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace CTCal.Core.Safetensors;

/// <summary>Element conversions from little-endian safetensors data.</summary>
internal static class SafetensorsConvert
{
    /// <summary>bfloat16 is the upper half of a float32: widening is exact.</summary>
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>float32 to bfloat16, rounded to nearest even (NaN stays NaN).</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    public static void ToFloat32(SafetensorsDType dtype, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (dtype)
        {
            case SafetensorsDType.F32:
                if (BitConverter.IsLittleEndian) src.CopyTo(MemoryMarshal.AsBytes(dst));
                else for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(i * 4)..]);
                break;
            case SafetensorsDType.F16:
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(src[(i * 2)..]);
                break;
            case SafetensorsDType.BF16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(i * 2)..]));
                break;
            case SafetensorsDType.F64:
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(src[(i * 8)..]);
                break;
            case SafetensorsDType.BOOL:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i] != 0 ? 1f : 0f;
                break;
            case SafetensorsDType.U8:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i];
                break;
            case SafetensorsDType.I8:
                for (int i = 0; i < dst.Length; i++) dst[i] = (sbyte)src[i];
                break;
            case SafetensorsDType.I16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt16LittleEndian(src[(i * 2)..]);
                break;
            case SafetensorsDType.U16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt16LittleEndian(src[(i * 2)..]);
                break;
            case SafetensorsDType.I32:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(i * 4)..]);
                break;
            case SafetensorsDType.U32:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt32LittleEndian(src[(i * 4)..]);
                break;
            case SafetensorsDType.I64:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt64LittleEndian(src[(i * 8)..]);
                break;
            case SafetensorsDType.U64:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt64LittleEndian(src[(i * 8)..]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null);
        }
    }

    /// <summary>Integer/BOOL to int64; false (with the element index) when a U64 value exceeds long.MaxValue.</summary>
    public static bool ToInt64(SafetensorsDType dtype, ReadOnlySpan<byte> src, Span<long> dst, out int badIndex)
    {
        badIndex = -1;
        switch (dtype)
        {
            case SafetensorsDType.I64:
                if (BitConverter.IsLittleEndian) src.CopyTo(MemoryMarshal.AsBytes(dst));
                else for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt64LittleEndian(src[(i * 8)..]);
                return true;
            case SafetensorsDType.U64:
                for (int i = 0; i < dst.Length; i++)
                {
                    ulong v = BinaryPrimitives.ReadUInt64LittleEndian(src[(i * 8)..]);
                    if (v > long.MaxValue) { badIndex = i; return false; }
                    dst[i] = (long)v;
                }
                return true;
            case SafetensorsDType.BOOL:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i] != 0 ? 1 : 0;
                return true;
            case SafetensorsDType.U8:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i];
                return true;
            case SafetensorsDType.I8:
                for (int i = 0; i < dst.Length; i++) dst[i] = (sbyte)src[i];
                return true;
            case SafetensorsDType.I16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt16LittleEndian(src[(i * 2)..]);
                return true;
            case SafetensorsDType.U16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt16LittleEndian(src[(i * 2)..]);
                return true;
            case SafetensorsDType.I32:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(i * 4)..]);
                return true;
            case SafetensorsDType.U32:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt32LittleEndian(src[(i * 4)..]);
                return true;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not an integer dtype");
        }
    }
}

using Xunit;
using System.Buffers.Binary;
using CTCal.Core.Safetensors;
using CTCal.Tests;

namespace CTCal.Core.Tests;

public sealed class SafetensorsDTypeTests
{
    [Fact]
    public void NamesAndSizesRoundTrip()
    {
        foreach (var t in Enum.GetValues<SafetensorsDType>())
        {
            Assert.True(SafetensorsDTypes.TryParse(t.ToHeaderName(), out var parsed));
            Assert.Equal(t, parsed);
            Assert.Equal(t.ToString(), t.ToHeaderName());
        }
        Assert.Equal(1, SafetensorsDType.BOOL.SizeInBytes());
        Assert.Equal(2, SafetensorsDType.BF16.SizeInBytes());
        Assert.Equal(2, SafetensorsDType.F16.SizeInBytes());
        Assert.Equal(4, SafetensorsDType.U32.SizeInBytes());
        Assert.Equal(8, SafetensorsDType.F64.SizeInBytes());
        Assert.False(SafetensorsDTypes.TryParse("f32", out _));
        Assert.False(SafetensorsDTypes.TryParse("F8_E5M2", out _));
    }

    // (bits, exact float32 value) pairs.
    public static TheoryData<ushort, float> Float16Values => new()
    {
        { 0x0000, 0f },
        { 0x3C00, 1f },
        { 0xBC00, -1f },
        { 0x4000, 2f },
        { 0x3555, 0.333251953125f },
        { 0x7BFF, 65504f },
        { 0x0400, 6.103515625e-05f },    // smallest normal
        { 0x0001, 5.9604644775390625e-08f }, // smallest subnormal
        { 0x7C00, float.PositiveInfinity },
        { 0xFC00, float.NegativeInfinity },
    };

    public static TheoryData<ushort, float> BFloat16Values => new()
    {
        { 0x0000, 0f },
        { 0x3F80, 1f },
        { 0xBF80, -1f },
        { 0x4049, 3.140625f },
        { 0x3EAB, 0.333984375f },
        { 0x7F7F, 3.3895313892515355e38f },
        { 0x0080, 1.1754943508222875e-38f }, // smallest normal
        { 0x7F80, float.PositiveInfinity },
    };

    private static float[] ReadOne(SafetensorsDType dtype, byte[] bytes, long[] shape)
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "one.safetensors");
            SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromBytes("v", dtype, shape, bytes)]);
            using var file = SafetensorsFile.Open(path);
            return file.ReadAsFloat32("v");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [MemberData(nameof(Float16Values))]
    public void Float16ToFloat32IsExact(ushort bits, float expected)
    {
        var bytes = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, bits);
        Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(ReadOne(SafetensorsDType.F16, bytes, [1])[0]));
    }

    [Theory]
    [MemberData(nameof(BFloat16Values))]
    public void BFloat16ToFloat32IsExact(ushort bits, float expected)
    {
        var bytes = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, bits);
        Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(ReadOne(SafetensorsDType.BF16, bytes, [1])[0]));
    }

    [Fact]
    public void Float16NaNStaysNaN()
    {
        Assert.True(float.IsNaN(ReadOne(SafetensorsDType.F16, [0x00, 0x7E], [1])[0]));
        Assert.True(float.IsNaN(ReadOne(SafetensorsDType.BF16, [0xC0, 0x7F], [1])[0]));
    }

    [Fact]
    public void IntegerAndDoubleConversions()
    {
        Assert.Equal([1f, 0f, 1f], ReadOne(SafetensorsDType.BOOL, [1, 0, 7], [3]));
        Assert.Equal([-1f, 127f], ReadOne(SafetensorsDType.I8, [0xFF, 0x7F], [2]));
        Assert.Equal([255f], ReadOne(SafetensorsDType.U8, [0xFF], [1]));
        Assert.Equal([-2f], ReadOne(SafetensorsDType.I16, [0xFE, 0xFF], [1]));
        Assert.Equal([65535f], ReadOne(SafetensorsDType.U16, [0xFF, 0xFF], [1]));
        Assert.Equal([4294967295f], ReadOne(SafetensorsDType.U32, [0xFF, 0xFF, 0xFF, 0xFF], [1]));
        var f64 = new byte[8];
        BinaryPrimitives.WriteDoubleLittleEndian(f64, 0.1);
        Assert.Equal([0.1f], ReadOne(SafetensorsDType.F64, f64, [1]));
        var i64 = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(i64, -123456789);
        Assert.Equal([-123456789f], ReadOne(SafetensorsDType.I64, i64, [1]));
    }

    [Fact]
    public void ReadAsInt64RefusesUnsignedValuesAboveLongMax()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "u64.safetensors");
            var bytes = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, 5);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(8), ulong.MaxValue);
            SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromBytes("big", SafetensorsDType.U64, [2], bytes),
                SafetensorsWriteEntry.FromBytes("small", SafetensorsDType.U64, [1], bytes.AsMemory(0, 8))]);
            using var file = SafetensorsFile.Open(path);
            Assert.Equal([5L], file.ReadAsInt64("small"));
            var ex = Assert.Throws<SafetensorsException>(() => file.ReadAsInt64("big"));
            Assert.Contains("'big'", ex.Message);
            Assert.Contains("element 1", ex.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

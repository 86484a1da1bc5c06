using Xunit;
using CTCal.Core.Safetensors;
using CTCal.Tests;

namespace CTCal.Core.Tests;

public sealed class SafetensorsWriterTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Target => Path.Combine(_dir, "out.safetensors");

    private SafetensorsException AssertWriteFails(IReadOnlyList<SafetensorsWriteEntry> entries, string? tensor, string part)
    {
        var ex = Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(Target, entries));
        Assert.Contains("out.safetensors", ex.Message);
        if (tensor is not null) Assert.Contains($"'{tensor}'", ex.Message);
        Assert.Contains(part, ex.Message);
        Assert.Empty(Directory.GetFiles(_dir)); // no target, no leftover temporary file
        return ex;
    }

    [Fact]
    public void TooFewBytesNamesTheTensor() =>
        AssertWriteFails([SafetensorsWriteEntry.FromFloat32("ok", [1], [1f]), SafetensorsWriteEntry.FromFloat32("short", [3], [1f, 2f])], "short", "wrote 8 bytes");

    [Fact]
    public void TooManyBytesNamesTheTensor() =>
        AssertWriteFails([SafetensorsWriteEntry.FromBytes("long", SafetensorsDType.U8, [2], new byte[] { 1, 2, 3 })], "long", "more than the 2 bytes");

    [Fact]
    public void DuplicateNames() =>
        AssertWriteFails([SafetensorsWriteEntry.FromFloat32("a", [1], [1f]), SafetensorsWriteEntry.FromFloat32("a", [1], [1f])], "a", "more than once");

    [Fact]
    public void ReservedName() =>
        AssertWriteFails([SafetensorsWriteEntry.FromFloat32("__metadata__", [1], [1f])], "__metadata__", "reserved");

    [Fact]
    public void NegativeDimension() =>
        AssertWriteFails([SafetensorsWriteEntry.FromBytes("neg", SafetensorsDType.U8, [-1], ReadOnlyMemory<byte>.Empty)], "neg", "negative");

    [Fact]
    public void OverflowingShape() =>
        AssertWriteFails([SafetensorsWriteEntry.FromBytes("huge", SafetensorsDType.F64, [long.MaxValue / 4, 3], ReadOnlyMemory<byte>.Empty)], "huge", "too large");

    [Fact]
    public void CallbackFailureLeavesExistingFileUntouched()
    {
        File.WriteAllText(Target, "previous");
        var entry = new SafetensorsWriteEntry("boom", SafetensorsDType.U8, [1], _ => throw new InvalidOperationException("callback failed"));
        Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.Write(Target, [entry]));
        Assert.Equal("previous", File.ReadAllText(Target));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public void EmptyFileHasPaddedEmptyHeader()
    {
        SafetensorsWriter.Write(Target, []);
        byte[] raw = File.ReadAllBytes(Target);
        Assert.Equal(16, raw.Length);
        Assert.Equal(8L, BitConverter.ToInt64(raw, 0));
        Assert.Equal("{}      ", System.Text.Encoding.ASCII.GetString(raw, 8, 8));
        using var file = SafetensorsFile.Open(Target);
        Assert.Empty(file.Tensors);
    }

    [Fact]
    public void CopyBytesToStreamsTheData()
    {
        var data = Enumerable.Range(0, 300_000).Select(i => (float)i).ToArray();
        SafetensorsWriter.Write(Target, [SafetensorsWriteEntry.FromFloat32("big", [300_000], data)]);
        using var file = SafetensorsFile.Open(Target);
        using var copy = new MemoryStream();
        file.CopyBytesTo("big", copy);
        Assert.Equal(file.GetBytes("big").ToArray(), copy.ToArray());
        Assert.Equal(data, file.ReadAsFloat32("big"));
    }

    [Fact]
    public void TensorOver2GiBIsRefusedBySpanApisButNotMapped()
    {
        // A sparse file: the header declares a 2^31-byte U8 tensor; no data is actually written to disk.
        const long size = 1L << 31;
        byte[] header = System.Text.Encoding.UTF8.GetBytes($"{{\"big\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[0,{size}]}}}}");
        using (var fs = new FileStream(Target, FileMode.CreateNew))
        {
            fs.Write(BitConverter.GetBytes((ulong)header.Length));
            fs.Write(header);
            fs.SetLength(8 + header.Length + size);
        }
        using var file = SafetensorsFile.Open(Target);
        Assert.Equal(size, file.GetInfo("big").ByteLength);
        var span = Assert.Throws<SafetensorsException>(() => file.GetBytes("big"));
        Assert.Contains("'big'", span.Message);
        Assert.Contains("CopyBytesTo", span.Message);
        var array = Assert.Throws<SafetensorsException>(() => file.ReadAsFloat32("big"));
        Assert.Contains("'big'", array.Message);
    }
}

using Xunit;
using System.Text;
using CTCal.Core.Safetensors;
using CTCal.Tests;

namespace CTCal.Core.Tests;

/// <summary>Each malformed file must fail with a SafetensorsException naming the file (and the tensor at fault).</summary>
public sealed class SafetensorsMalformedTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteRaw(string fileName, byte[] bytes)
    {
        string path = Path.Combine(_dir, fileName);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string WriteWithHeader(string fileName, string header, int dataBytes, ulong? declaredLength = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), declaredLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        return WriteRaw(fileName, bytes);
    }

    private static SafetensorsException AssertFails(string path, string? tensor, string? messagePart = null)
    {
        var ex = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(Path.GetFileName(path), ex.Message);
        Assert.Equal(path, ex.File);
        if (tensor is not null)
        {
            Assert.Contains($"'{tensor}'", ex.Message);
            Assert.Equal(tensor, ex.Tensor);
        }
        if (messagePart is not null) Assert.Contains(messagePart, ex.Message);
        return ex;
    }

    [Fact]
    public void ValidHandMadeFileOpens()
    {
        string path = WriteWithHeader("ok.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
        using var file = SafetensorsFile.Open(path);
        Assert.Single(file.Tensors);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void MissingFile() => AssertFails(Path.Combine(_dir, "absent.safetensors"), null, "cannot open");

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void ShorterThanEightBytes(int length) => AssertFails(WriteRaw($"short{length}.safetensors", new byte[length]), null, "fewer than the 8-byte");

    [Fact]
    public void HeaderLengthPastEndOfFile() =>
        AssertFails(WriteWithHeader("past.safetensors", "{}", 0, declaredLength: 1000), null, "past the end");

    [Fact]
    public void HugeHeaderLengthDoesNotOverflow() =>
        AssertFails(WriteWithHeader("huge.safetensors", "{}", 0, declaredLength: ulong.MaxValue), null, "past the end");

    [Fact]
    public void HeaderOver100MB()
    {
        string path = Path.Combine(_dir, "big.safetensors");
        using (var fs = new FileStream(path, FileMode.CreateNew))
        {
            fs.Write(BitConverter.GetBytes(100_000_008UL));
            fs.SetLength(8 + 100_000_008L); // sparse: no 100 MB actually written
        }
        AssertFails(path, null, "exceeds the limit");
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("{\"a\":")]
    [InlineData("{} trailing")]
    public void InvalidJson(string header) => AssertFails(WriteWithHeader("badjson.safetensors", header, 0), null, "not valid JSON");

    [Theory]
    [InlineData("[]")]
    [InlineData("42")]
    [InlineData("\"text\"")]
    public void HeaderNotAnObject(string header) => AssertFails(WriteWithHeader("notobj.safetensors", header, 0), null, "must be a JSON object");

    [Fact]
    public void InvalidUtf8Header()
    {
        var bytes = new byte[8 + 8];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), 8UL);
        "{\"\u00ff\":1}"u8.ToArray().CopyTo(bytes, 8);
        bytes[10] = 0xFF; // break the UTF-8 sequence inside the key
        AssertFails(WriteRaw("utf8.safetensors", bytes), null);
    }

    [Theory]
    [InlineData("dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}")]
    [InlineData("shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}")]
    [InlineData("data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}")]
    public void EntryMissingField(string field, string header) =>
        AssertFails(WriteWithHeader($"missing-{field}.safetensors", header, 4), "w", $"no '{field}'");

    [Fact]
    public void EntryNotAnObject() => AssertFails(WriteWithHeader("entry.safetensors", "{\"w\":[1,2]}", 0), "w", "must be an object");

    [Theory]
    [InlineData("F8_E4M3")]
    [InlineData("f32")]
    [InlineData("float32")]
    public void UnknownDType(string dtype) =>
        AssertFails(WriteWithHeader("dtype.safetensors", $"{{\"w\":{{\"dtype\":\"{dtype}\",\"shape\":[1],\"data_offsets\":[0,4]}}}}", 4), "w", dtype);

    [Fact]
    public void NegativeDimension() =>
        AssertFails(WriteWithHeader("neg.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,4]}}", 4), "w", "negative");

    [Theory]
    [InlineData("[1.5]")]
    [InlineData("[\"2\"]")]
    [InlineData("3")]
    public void NonIntegerShape(string shape) =>
        AssertFails(WriteWithHeader("shape.safetensors", $"{{\"w\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[0,4]}}}}", 4), "w");

    [Fact]
    public void NegativeOffset() =>
        AssertFails(WriteWithHeader("negoff.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4), "w", "negative");

    [Fact]
    public void ShapeDisagreesWithOffsets() =>
        AssertFails(WriteWithHeader("span.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20), "w", "needs 24 bytes");

    [Fact]
    public void HugeShapeOverflowIsCaught() =>
        AssertFails(WriteWithHeader("overflow.safetensors",
            "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0), "w", "too large");

    [Fact]
    public void OffsetsEndBeforeTheyBegin() =>
        AssertFails(WriteWithHeader("reversed.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4), "w");

    [Fact]
    public void OffsetsOutsideDataSection() =>
        AssertFails(WriteWithHeader("outside.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8), "w", "outside the data section");

    [Fact]
    public void OverlappingTensors() =>
        AssertFails(WriteWithHeader("overlap.safetensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "b", "overlap");

    [Fact]
    public void HoleBetweenTensors() =>
        AssertFails(WriteWithHeader("hole.safetensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12), "b", "hole");

    [Fact]
    public void TrailingBytesAfterLastTensor() =>
        AssertFails(WriteWithHeader("trailing.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12), null, "trailing");

    [Fact]
    public void DuplicateTensorNames() =>
        AssertFails(WriteWithHeader("dup.safetensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "a", "more than once");

    [Fact]
    public void TooManyTensors()
    {
        // The real bound is 1,000,000 (a ~60 MB header); the same check runs here with a bound of 3.
        var sb = new StringBuilder("{");
        for (int i = 0; i < 4; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append("\"t").Append(i).Append("\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[").Append(i).Append(',').Append(i + 1).Append("]}");
        }
        sb.Append('}');
        string path = WriteWithHeader("many.safetensors", sb.ToString(), 4);
        var ex = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path, maxTensors: 3));
        Assert.Contains("many.safetensors", ex.Message);
        Assert.Contains("more than 3 tensors", ex.Message);
        using (var ok = SafetensorsFile.Open(path, maxTensors: 4)) Assert.Equal(4, ok.Tensors.Count);
        using (var ok = SafetensorsFile.Open(path)) Assert.Equal(4, ok.Tensors.Count);
    }

    [Theory]
    [InlineData("{\"k\":1}", "'k'")]
    [InlineData("{\"k\":null}", "'k'")]
    [InlineData("{\"k\":[\"a\"]}", "'k'")]
    [InlineData("[\"a\"]", "__metadata__")]
    public void MetadataValuesMustBeStrings(string metadata, string named) =>
        AssertFails(WriteWithHeader("meta.safetensors", $"{{\"__metadata__\":{metadata}}}", 0), null, named);

    [Fact]
    public void MetadataIsReadFromAnyPosition()
    {
        string path = WriteWithHeader("metaok.safetensors",
            "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"__metadata__\":{\"format\":\"pt\"}}", 1);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(["a"], file.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void TensorsAreListedInDataOrder()
    {
        string path = WriteWithHeader("order.safetensors",
            "{\"late\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]},\"early\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 3);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["early", "late"], file.Tensors.Select(t => t.Name));
    }
}

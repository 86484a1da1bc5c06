using Xunit;
using CTCal.Core.Safetensors;
using CTCal.Tests;

namespace CTCal.Core.Tests;

public sealed class SafetensorsRoundTripTests
{
    public static TheoryData<string> FixtureFiles()
    {
        var data = new TheoryData<string>();
        foreach (string f in Directory.EnumerateFiles(TestPaths.Fixtures, "*.safetensors", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            data.Add(Path.GetRelativePath(TestPaths.Fixtures, f));
        return data;
    }

    [Fact]
    public void FixturesExist() => Assert.True(FixtureFiles().Count >= 7, "expected the reference .safetensors fixtures");

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void RewritingEveryTensorGivesTheSameBytes(string relative)
    {
        string source = Path.Combine(TestPaths.Fixtures, relative);
        string dir = TestPaths.NewTempDir();
        try
        {
            string target = Path.Combine(dir, "copy.safetensors");
            using (var file = SafetensorsFile.Open(source))
            {
                Assert.NotEmpty(file.Tensors);
                var entries = file.Tensors
                    .Select(t => new SafetensorsWriteEntry(t.Name, t.DType, t.Shape, s => file.CopyBytesTo(t.Name, s)))
                    .ToList();
                SafetensorsWriter.Write(target, entries, file.Metadata);
            }
            byte[] expected = File.ReadAllBytes(source);
            byte[] actual = File.ReadAllBytes(target);
            Assert.Equal(expected.Length, actual.Length);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{relative}: rewritten file differs");
            Assert.Equal(["copy.safetensors"], Directory.GetFiles(dir).Select(Path.GetFileName));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void FixtureTensorsAreInDataOrderAndCoverTheFile(string relative)
    {
        string source = Path.Combine(TestPaths.Fixtures, relative);
        using var file = SafetensorsFile.Open(source);
        long cursor = 0;
        foreach (var t in file.Tensors)
        {
            Assert.Equal(cursor, t.DataStart);
            Assert.Equal(t.ElementCount * t.DType.SizeInBytes(), t.ByteLength);
            Assert.Equal(t.ByteLength, file.GetBytes(t.Name).Length);
            cursor = t.DataEnd;
        }
        Assert.Equal(new FileInfo(source).Length, file.DataSectionOffset + cursor);
    }

    [Fact]
    public void TextEncoderIoHasInt64IdsAndFloatOutputs()
    {
        using var file = SafetensorsFile.Open(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "text_encoder_io.safetensors"));
        var ids = file.GetInfo("input_ids");
        Assert.Equal(SafetensorsDType.I64, ids.DType);
        Assert.Equal([4L, 77L], ids.Shape);
        long[] values = file.ReadAsInt64("input_ids");
        Assert.Equal(4 * 77, values.Length);
        Assert.Equal(49406, values[0]); // <|startoftext|>
        Assert.Equal(49407, values[76]); // SD1 pads with <|endoftext|>
        float[] asFloat = file.ReadAsFloat32("input_ids");
        Assert.Equal(49406f, asFloat[0]);

        float[] hidden = file.ReadAsFloat32("last_hidden_state");
        Assert.Equal(4 * 77 * 32, hidden.Length);
        Assert.All(hidden, v => Assert.True(float.IsFinite(v)));
        var ex = Assert.Throws<SafetensorsException>(() => file.ReadAsInt64("last_hidden_state"));
        Assert.Contains("last_hidden_state", ex.Message);
    }

    [Fact]
    public void MetadataAndSpecialNamesRoundTrip()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "meta.safetensors");
            var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "quote \" backslash \\ tab \t ctl \u0001 é 日本" };
            var entries = new List<SafetensorsWriteEntry>
            {
                SafetensorsWriteEntry.FromFloat32("b/second \"q\"", [2, 2], [1f, 2f, 3f, 4f]),
                SafetensorsWriteEntry.FromFloat32("a.scalar", [], [7.5f]),
                SafetensorsWriteEntry.FromBytes("empty", SafetensorsDType.F16, [0, 3], ReadOnlyMemory<byte>.Empty),
                SafetensorsWriteEntry.FromBytes("ids", SafetensorsDType.I32, [2], new byte[] { 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF }),
                SafetensorsWriteEntry.FromBytes("ünïcode", SafetensorsDType.U8, [3], new byte[] { 1, 2, 255 }),
            };
            SafetensorsWriter.Write(path, entries, metadata);

            byte[] raw = File.ReadAllBytes(path);
            long n = BitConverter.ToInt64(raw, 0);
            Assert.Equal(0, (8 + n) % 8);
            string header = System.Text.Encoding.UTF8.GetString(raw, 8, (int)n);
            Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\",\"note\":\"quote \\\" backslash \\\\ tab \\t ctl \\u0001 é 日本\"},\"b/second \\\"q\\\"\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", header);
            Assert.Contains("\"a.scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]}", header);

            using var file = SafetensorsFile.Open(path);
            Assert.Equal(metadata, file.Metadata);
            Assert.Equal(entries.Select(e => e.Name), file.Tensors.Select(t => t.Name));
            Assert.Equal([1f, 2f, 3f, 4f], file.ReadAsFloat32("b/second \"q\""));
            Assert.Equal([7.5f], file.ReadAsFloat32("a.scalar"));
            Assert.Equal(1, file.GetInfo("a.scalar").ElementCount);
            Assert.Empty(file.ReadAsFloat32("empty"));
            Assert.Equal([1L, -1L], file.ReadAsInt64("ids"));
            Assert.Equal([1L, 2L, 255L], file.ReadAsInt64("ünïcode"));

            string again = Path.Combine(dir, "again.safetensors");
            SafetensorsWriter.Write(again, file.Tensors.Select(t => new SafetensorsWriteEntry(t.Name, t.DType, t.Shape, s => file.CopyBytesTo(t.Name, s))).ToList(), file.Metadata);
            Assert.Equal(raw, File.ReadAllBytes(again));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void WriteReplacesAnExistingFileAndLeavesNoTemporaryFiles()
    {
        string dir = TestPaths.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "w.safetensors");
            File.WriteAllText(path, "old contents");
            SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromFloat32("x", [1], [3f])]);
            using (var file = SafetensorsFile.Open(path)) Assert.Equal([3f], file.ReadAsFloat32("x"));
            Assert.Single(Directory.GetFiles(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ReadAsFloat32IntoSpanChecksTheLength()
    {
        using var file = SafetensorsFile.Open(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "vae_io.safetensors"));
        var buffer = new float[1 * 4 * 16 * 16];
        file.ReadAsFloat32("latents", buffer);
        Assert.Equal(file.ReadAsFloat32("latents"), buffer);
        var ex = Assert.Throws<SafetensorsException>(() => file.ReadAsFloat32("latents", new float[3]));
        Assert.Contains("latents", ex.Message);
    }

    [Fact]
    public void MissingTensorNamesFileAndTensor()
    {
        string path = Path.Combine(TestPaths.Fixtures, "tiny-sd1", "vae_io.safetensors");
        using var file = SafetensorsFile.Open(path);
        Assert.False(file.Contains("nope"));
        Assert.True(file.Contains("latents"));
        var ex = Assert.Throws<SafetensorsException>(() => file.GetInfo("nope"));
        Assert.Contains("vae_io.safetensors", ex.Message);
        Assert.Contains("nope", ex.Message);
        Assert.Equal("nope", ex.Tensor);
        Assert.Equal(path, ex.File);
        Assert.Throws<SafetensorsException>(() => file.ReadAsFloat32("nope"));
    }

    [Fact]
    public void UseAfterDisposeThrows()
    {
        var file = SafetensorsFile.Open(Path.Combine(TestPaths.Fixtures, "schedulers.safetensors"));
        file.Dispose();
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadAsFloat32("x0"));
    }
}

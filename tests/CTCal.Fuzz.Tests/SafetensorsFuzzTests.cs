using System.Buffers.Binary;
using System.Text;
using CsCheck;
using CTCal.Core.Safetensors;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// SafetensorsFile.Open (header and layout validation) and the typed reads on what it accepts. Documented outcome:
/// a file or <see cref="SafetensorsException"/>.
/// </summary>
public sealed class SafetensorsFuzzTests : IDisposable
{
    private static readonly Type[] Documented = [typeof(SafetensorsException)];
    private readonly TempFolder _temp = new("ctcal-fuzz-st");

    public void Dispose() => _temp.Dispose();

    internal sealed record Tensor(string Name, SafetensorsDType DType, long[] Shape, byte[] Data)
    {
        public override string ToString() => $"{FuzzBounds.Describe(Name, 40)}:{DType}[{string.Join(",", Shape)}]";
    }

    internal sealed record Spec(Tensor[] Tensors, Dictionary<string, string> Metadata)
    {
        public override string ToString() =>
            $"{Tensors.Length} tensors ({string.Join("; ", Tensors.Select(t => t.ToString()))}), metadata {Metadata.Count}";
    }

    /// <summary>Names with JSON escapes (quotes, backslashes, control characters), non-ASCII and astral characters; never lone surrogates.</summary>
    private static readonly Gen<string> Name = Gen.OneOf(
        Gen.String[Gen.Char["abcdefghijklmnopqrstuvwxyz0123456789._"], 1, 24],
        Gen.String[Gen.Char["a\"\\\n\t\u0001\u001f/é漢 "], 1, 8],
        Gen.Const("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight"),
        Gen.Const("🎉emoji"), Gen.Const(""), Gen.Const("__metadata___"));

    private static readonly Gen<Tensor> TensorGen =
        from name in Name
        from dtype in Gen.Enum<SafetensorsDType>()
        from shape in Gen.Long[0, 4].Array[0, 3]
        from seed in Gen.Int
        select MakeTensor(name, dtype, shape, seed);

    private static Tensor MakeTensor(string name, SafetensorsDType dtype, long[] shape, int seed)
    {
        var data = new byte[SafetensorsDTypes.ElementCount(shape) * dtype.SizeInBytes()];
        new Random(seed).NextBytes(data);
        return new Tensor(name, dtype, shape, data);
    }

    internal static readonly Gen<Spec> ValidSpec =
        from tensors in TensorGen.Array[0, 6]
        from meta in Gen.Dictionary(Name, Gen.String)[0, 3]
        select new Spec(tensors.DistinctBy(t => t.Name).ToArray(), meta);

    internal static byte[] Serialize(Spec spec, string folder)
    {
        string path = Path.Combine(folder, $"valid-{Guid.NewGuid():N}.safetensors");
        SafetensorsWriter.Write(path, spec.Tensors.Select(t => SafetensorsWriteEntry.FromBytes(t.Name, t.DType, t.Shape, t.Data)).ToList(), spec.Metadata);
        byte[] bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return bytes;
    }

    /// <summary>Opens the file and reads every tensor every way; the property holds for all of it.</summary>
    private Outcome<int> OpenAndReadAll(byte[] bytes, string description) =>
        FuzzBounds.Check(() =>
        {
            string path = _temp.Write(bytes, ".safetensors");
            try
            {
                using var file = SafetensorsFile.Open(path);
                int read = 0;
                foreach (var info in file.Tensors)
                {
                    _ = file.GetBytes(info.Name).Length;
                    _ = file.ReadAsFloat32(info.Name);
                    if (!info.DType.IsFloatingPoint())
                    {
                        try
                        {
                            _ = file.ReadAsInt64(info.Name);
                        }
                        catch (SafetensorsException) when (info.DType == SafetensorsDType.U64)
                        {
                            // U64 values above long.MaxValue are refused, as documented.
                        }
                    }
                    read++;
                }
                return read;
            }
            finally
            {
                File.Delete(path);
            }
        }, description, Documented);

    [Fact]
    public void Valid_files_round_trip_names_dtypes_shapes_bytes_and_metadata()
    {
        ValidSpec.Run(spec =>
        {
            string path = Path.Combine(_temp.Path, $"rt-{Guid.NewGuid():N}.safetensors");
            SafetensorsWriter.Write(path, spec.Tensors.Select(t => SafetensorsWriteEntry.FromBytes(t.Name, t.DType, t.Shape, t.Data)).ToList(), spec.Metadata);
            var outcome = FuzzBounds.Check(() =>
            {
                using var file = SafetensorsFile.Open(path);
                Assert.Equal(spec.Tensors.Length, file.Tensors.Count);
                for (int i = 0; i < spec.Tensors.Length; i++)
                {
                    var expected = spec.Tensors[i];
                    var info = file.Tensors[i]; // data order = write order
                    Assert.Equal(expected.Name, info.Name);
                    Assert.Equal(expected.DType, info.DType);
                    Assert.Equal(expected.Shape, info.Shape);
                    Assert.Equal(expected.Data, file.GetBytes(expected.Name).ToArray());
                }
                Assert.Equal(spec.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal), file.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal));
                return true;
            }, spec.ToString(), []);
            Assert.True(outcome.Succeeded);
            File.Delete(path);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Byte_mutations_of_valid_files_open_or_throw_SafetensorsException()
    {
        Gen.Select(ValidSpec, ByteMutator.Mutations()).Run((spec, mutations) =>
        {
            byte[] bytes = ByteMutator.Apply(Serialize(spec, _temp.Path), mutations);
            OpenAndReadAll(bytes, $"{spec} mutated by {string.Join(", ", mutations)}: {FuzzBounds.Describe(bytes)}");
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Header_json_mutations_open_or_throw_SafetensorsException()
    {
        Gen.Select(ValidSpec, JsonMutator.Mutations(), Gen.Bool).Run((spec, mutations, pad) =>
        {
            byte[] valid = Serialize(spec, _temp.Path);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(valid);
            string header = Encoding.UTF8.GetString(valid, 8, (int)n).TrimEnd(' ');
            string mutated = JsonMutator.Apply(header, mutations);
            byte[] bytes = WithHeader(mutated, valid.AsSpan(8 + (int)n), pad);
            OpenAndReadAll(bytes, $"header {FuzzBounds.Describe(mutated)} from {string.Join(", ", mutations)}");
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Length_prefix_set_to_hostile_values_throws_SafetensorsException()
    {
        Gen.Select(ValidSpec, Gen.Int[0, ByteMutator.InterestingIntegers.Length + 3]).Run((spec, which) =>
        {
            byte[] bytes = Serialize(spec, _temp.Path);
            ulong real = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            ulong value = which switch
            {
                var w when w < ByteMutator.InterestingIntegers.Length => (ulong)ByteMutator.InterestingIntegers[w],
                var w when w == ByteMutator.InterestingIntegers.Length => real + 1,
                var w when w == ByteMutator.InterestingIntegers.Length + 1 => real - 1,
                var w when w == ByteMutator.InterestingIntegers.Length + 2 => (ulong)bytes.Length - 8,
                _ => ulong.MaxValue,
            };
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
            var outcome = OpenAndReadAll(bytes, $"{spec} with length prefix {value} (real {real})");
            if (value != real && outcome.Succeeded)
            {
                // Only a shorter header that still parses to the same layout could be accepted; never a longer one.
                Assert.True(value < real, $"length prefix {value} > real {real} accepted");
            }
        }, iter: FuzzBounds.Scaled(0.5));
    }

    [Fact]
    public void Random_bytes_open_or_throw_SafetensorsException()
    {
        Gen.Byte.Array[0, 600].Run(bytes => { OpenAndReadAll(bytes, FuzzBounds.Describe(bytes)); },
            iter: FuzzBounds.Scaled(0.5));
    }

    [Fact]
    public void Writer_refuses_lone_surrogate_names_with_SafetensorsException()
    {
        Gen.Select(Name, Gen.Int[0, 20], Gen.Char['\ud800', '\udfff']).Run((name, at, surrogate) =>
        {
            string bad = name.Insert(Math.Min(at, name.Length), surrogate.ToString());
            if (bad.Length > 1 && char.IsSurrogatePair(bad, Math.Max(0, Math.Min(at, bad.Length - 2)))) return;
            string path = Path.Combine(_temp.Path, "w.safetensors");
            var outcome = FuzzBounds.Check(() =>
            {
                SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromBytes(bad, SafetensorsDType.U8, [1], new byte[1])]);
                return true;
            }, FuzzBounds.Describe(bad), Documented);
            // The writer must refuse the name (not write a file whose header is not valid UTF-8), with the documented type.
            Assert.False(outcome.Succeeded, $"the writer accepted the lone surrogate in {FuzzBounds.Describe(bad)}");
            Assert.IsType<SafetensorsException>(outcome.Error);
            Assert.False(File.Exists(path), "a file was written under the final name");
            Assert.Empty(Directory.GetFiles(_temp.Path, ".w.safetensors.*.tmp"));
        }, iter: FuzzBounds.Scaled(0.5));
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("safetensors", "*.safetensors"))
        {
            bool expectValid = Path.GetFileName(file).StartsWith("valid-", StringComparison.Ordinal);
            var outcome = OpenAndReadAll(File.ReadAllBytes(file), file);
            Assert.True(outcome.Succeeded == expectValid, $"{file}: {(outcome.Error?.Message ?? "opened")}");
        }
    }

    internal static byte[] WithHeader(string header, ReadOnlySpan<byte> data, bool pad)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(header);
        int length = pad ? (utf8.Length + 7) / 8 * 8 : utf8.Length;
        var bytes = new byte[8 + length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)length);
        utf8.CopyTo(bytes, 8);
        bytes.AsSpan(8 + utf8.Length, length - utf8.Length).Fill((byte)' ');
        data.CopyTo(bytes.AsSpan(8 + length));
        return bytes;
    }
}

using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// SingleFileCheckpoint.Open (family detection, config derivation, key mapping) and OpenWeights over mutated headers of a
/// valid SD 1.x single file (keys dropped, renamed, re-indexed, added; shapes and dtypes changed): the outcome is a
/// checkpoint whose every mapped tensor reads, or ModelFolderException / SafetensorsException / DiffusersConfigException.
/// </summary>
public sealed class SingleFileCheckpointFuzzTests : IDisposable
{
    private readonly TempFolder _temp = new("ctcal-fuzz-single");

    public void Dispose() => _temp.Dispose();

    private static readonly Type[] Documented = [typeof(ModelFolderException), typeof(SafetensorsException), typeof(DiffusersConfigException)];

    private static readonly string[] Inserts = ["0", "7", "99", "123456789012", ".", "..", "x", "model.diffusion_model.", "cond_stage_model.model.transformer.resblocks.0."];

    private List<(string Key, SafetensorsDType DType, long[] Shape)> Valid()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_temp.Path, "valid.safetensors"), ModelFamily.Sd1);
        using var f = SafetensorsFile.Open(file);
        return f.Tensors.Select(t => (t.Name, t.DType, t.Shape)).ToList();
    }

    // A header-only file: the data section is sparse zeros of the right length.
    private static void WriteSparse(string path, List<(string Key, SafetensorsDType DType, long[] Shape)> tensors)
    {
        var header = new JsonObject();
        long offset = 0;
        foreach (var (key, dtype, shape) in tensors)
        {
            long bytes = shape.Aggregate(1L, (a, b) => a * b) * dtype.SizeInBytes();
            header[key] = new JsonObject
            {
                ["dtype"] = dtype.ToHeaderName(),
                ["shape"] = new JsonArray(shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        stream.Write(length);
        stream.Write(json);
        stream.SetLength(8 + json.Length + offset);
    }

    [Fact]
    public void Mutated_single_files_open_and_read_or_throw_documented_exceptions()
    {
        var valid = Valid();
        Gen.Select(Gen.Int[0, 5], Gen.Int[0, valid.Count - 1], Gen.Int[0, Inserts.Length - 1], Gen.Int[1, 40]).Run((op, index, insert, count) =>
        {
            var tensors = valid.ToList();
            var (key, dtype, shape) = tensors[index];
            switch (op)
            {
                case 0: tensors.RemoveRange(index, Math.Min(count, tensors.Count - index)); break;
                case 1: tensors[index] = (key.Insert(Math.Min(count, key.Length), Inserts[insert]), dtype, shape); break;
                case 2: tensors[index] = (key, dtype, shape.Length == 0 ? [2] : [.. shape[..^1], shape[^1] + count]); break;
                case 3: tensors[index] = (key, SafetensorsDType.I64, shape); break;
                case 4: tensors.Add(($"{key[..Math.Min(count, key.Length)]}{Inserts[insert]}.weight", SafetensorsDType.F32, [count])); break;
                default: tensors[index] = (key, dtype, shape.Length > 1 ? [shape[0] * shape[1], .. shape[2..]] : [.. shape, 1, 1]); break;
            }
            if (tensors.Select(t => t.Key).Distinct().Count() != tensors.Count) return;
            string path = Path.Combine(_temp.Path, Guid.NewGuid().ToString("N") + ".safetensors");
            WriteSparse(path, tensors);
            var outcome = FuzzBounds.Check(() =>
            {
                var checkpoint = SingleFileCheckpoint.Open(path);
                foreach (string component in new[] { "unet", "vae", "text_encoder" })
                {
                    using var weights = checkpoint.OpenWeights(component);
                    foreach (var t in weights.Tensors.Take(3)) weights.ReadAsFloat32(t.Name);
                }
                return checkpoint;
            }, $"op {op} on '{key}' ({count}, '{Inserts[insert]}')", Documented);
            if (outcome.Value is { } c) Assert.Equal(ModelFamily.Sd1, c.Family);
            File.Delete(path);
        }, iter: FuzzBounds.Scaled(0.2));
    }
}

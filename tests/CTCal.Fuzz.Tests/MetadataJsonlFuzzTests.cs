using CTCal.Core.Datasets;
using System.Text;
using CsCheck;
using CTCal.Synthetic;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>DatasetWriter.ReadMetadata (metadata.jsonl): lines written by MetadataJson read back; mutated files give lines or InvalidDataException.</summary>
public sealed class MetadataJsonlFuzzTests : IDisposable
{
    private static readonly Type[] Documented = [typeof(InvalidDataException)];
    private readonly TempFolder _temp = new("ctcal-fuzz-meta");

    public void Dispose() => _temp.Dispose();

    /// <summary>Valid UTF-16 text (no lone surrogates): ASCII, JSON escapes, control characters, non-ASCII and astral characters.</summary>
    private static readonly Gen<string> Text = Gen.OneOf(
        Gen.String[Gen.Char.AlphaNumeric, 0, 40],
        Gen.String[Gen.Char["a \"\\\n\t\u0001\u2028/é漢<>&'"], 0, 20],
        Gen.OneOf("a red circle and a blue square", "🎉 emoji", "three green triangles", ""));

    private static readonly Gen<string> FileName = Gen.OneOf(
        Gen.String[Gen.Char.AlphaNumeric, 1, 12].Select(s => s + ".png"),
        Gen.OneOf("00000.png", "é.png", "a b.png", "...png", "x"));

    /// <summary>A subject as the reader keeps it: trimmed, not empty (it trims and drops the others).</summary>
    private static readonly Gen<string> Subject = Text.Select(t => t.Trim()).Where(t => t.Length > 0);

    /// <summary>Valid lines: a caption with something besides white space (an empty one is a bad record), subjects as kept.</summary>
    private static readonly Gen<MetadataLine[]> ValidLines =
        Gen.Select(FileName, Text.Where(t => t.Trim().Length > 0), Subject.Array[0, 3], (f, t, s) => new MetadataLine(f, t, s)).Array[0, 8];

    private static string ToJsonl(IEnumerable<MetadataLine> lines) => string.Concat(lines.Select(l => MetadataJsonl.Format(l) + "\n"));

    private Outcome<IReadOnlyList<MetadataLine>> Read(byte[] bytes, string description)
    {
        string path = _temp.Write(bytes, ".jsonl");
        try
        {
            return FuzzBounds.Check(() => DatasetWriter.ReadMetadata(path), description, Documented);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Valid_metadata_lines_round_trip()
    {
        ValidLines.Run(lines =>
        {
            var read = Read(Encoding.UTF8.GetBytes(ToJsonl(lines)), string.Join(" | ", lines.Select(l => l.ToString()))).Value!;
            Assert.Equal(lines.Length, read.Count);
            for (int i = 0; i < lines.Length; i++)
            {
                Assert.Equal(lines[i].FileName, read[i].FileName);
                Assert.Equal(lines[i].Text, read[i].Text);
                Assert.Equal(lines[i].Subjects, read[i].Subjects);
            }
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Mutated_metadata_reads_or_throws_InvalidDataException()
    {
        var seeds = Corpus.Texts("metadata-jsonl", "valid.*.jsonl");
        var source = Gen.OneOf(Gen.Int[0, seeds.Length - 1].Select(i => seeds[i]), ValidLines.Select(ToJsonl));
        Gen.Select(source, Gen.Int[0, 100], JsonMutator.Mutations(), ByteMutator.Mutations(2), Gen.Bool)
            .Run((jsonl, lineIndex, jsonMutations, byteMutations, bytesToo) =>
            {
                // JSON mutations on one line (or the whole file, so that line breaks move), then optional raw byte mutations.
                var lines = jsonl.Split('\n');
                int target = lineIndex % (lines.Length + 1);
                if (target < lines.Length) lines[target] = JsonMutator.Apply(lines[target], jsonMutations);
                string text = target < lines.Length ? string.Join('\n', lines) : JsonMutator.Apply(jsonl, jsonMutations);
                byte[] bytes = Encoding.UTF8.GetBytes(text);
                if (bytesToo) bytes = ByteMutator.Apply(bytes, byteMutations);
                Read(bytes, $"{FuzzBounds.Describe(bytes)} ({string.Join(", ", jsonMutations)}{(bytesToo ? "; " + string.Join(", ", byteMutations) : "")})");
            }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("metadata-jsonl", "*.jsonl"))
        {
            bool expectValid = Path.GetFileName(file).StartsWith("valid.", StringComparison.Ordinal);
            var outcome = Read(File.ReadAllBytes(file), file);
            Assert.True(outcome.Succeeded == expectValid, $"{file}: {outcome.Error?.Message ?? "read"}");
        }
    }
}

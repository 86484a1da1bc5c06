using System.Text;
using CsCheck;
using CTCal.Synthetic;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>DatasetWriter.ReadEvalPrompts: files written by WriteEvalPrompts read back; mutated files give prompts or InvalidDataException.</summary>
public sealed class EvalPromptsFuzzTests : IDisposable
{
    private static readonly Type[] Documented = [typeof(InvalidDataException)];
    private readonly TempFolder _temp = new("ctcal-fuzz-eval");

    public void Dispose() => _temp.Dispose();

    private static readonly Gen<SyntheticWorld> Worlds =
        Gen.Select(Gen.ULong, Gen.Int[0, 3], (seed, perCategory) => SyntheticWorld.Create(new SyntheticWorldOptions
        {
            Seed = seed, TrainCount = 0, EvalPromptsPerCategory = perCategory, ImageSize = 32,
        }));

    private string WriteValid(SyntheticWorld world)
    {
        string path = Path.Combine(_temp.Path, $"eval-{Guid.NewGuid():N}.json");
        DatasetWriter.WriteEvalPrompts(world, path);
        return path;
    }

    private Outcome<IReadOnlyList<EvalPrompt>> Read(byte[] bytes, string description)
    {
        string path = _temp.Write(bytes, ".json");
        try
        {
            return FuzzBounds.Check(() => DatasetWriter.ReadEvalPrompts(path), description, Documented);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Written_eval_prompts_read_back_identically()
    {
        Worlds.Run(world =>
        {
            string path = WriteValid(world);
            var read = Read(File.ReadAllBytes(path), $"world seed {world.Options.Seed}").Value!;
            File.Delete(path);
            Assert.Equal(world.EvalPrompts.Count, read.Count);
            for (int i = 0; i < read.Count; i++)
            {
                var (e, r) = (world.EvalPrompts[i], read[i]);
                Assert.Equal((e.Prompt, e.Category, e.HeldOutPair), (r.Prompt, r.Category, r.HeldOutPair));
                Assert.Equal(e.Spec, r.Spec);
                Assert.Equal(e.Subjects, r.Subjects);
            }
        }, iter: FuzzBounds.Scaled(0.2));
    }

    [Fact]
    public void Mutated_eval_prompt_files_read_or_throw_InvalidDataException()
    {
        var seeds = Corpus.Texts("eval-prompts", "valid.*.json");
        Gen.Select(Gen.Int[0, seeds.Length - 1], JsonMutator.Mutations()).Run((seed, mutations) =>
        {
            string mutated = JsonMutator.Apply(seeds[seed], mutations);
            Read(Encoding.UTF8.GetBytes(mutated), $"{FuzzBounds.Describe(mutated)} ({string.Join(", ", mutations)})");
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("eval-prompts", "*.json"))
        {
            bool expectValid = Path.GetFileName(file).StartsWith("valid.", StringComparison.Ordinal);
            var outcome = Read(File.ReadAllBytes(file), file);
            Assert.True(outcome.Succeeded == expectValid, $"{file}: {outcome.Error?.Message ?? "read"}");
        }
    }
}

using CTCal.Core.Models;
using CTCal.Core.Text;
using CTCal.Export.Decoder;
using CTCal.Subjects;
using Xunit;

namespace CTCal.Subjects.Tests;

/// <summary>The project's own tiny decoder folder loads and generates through the real ONNX Runtime GenAI runtime.</summary>
public sealed class GenaiRuntimeTests
{
    private static readonly string[] Words = ["a", "red", "cube", "and", "blue", "sphere", "on", "top", "of"];

    private static (string Folder, ByteLevelBpe Tokenizer) UntrainedFolder()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"ctcal-genai-{Guid.NewGuid():N}");
        var tokenizer = ByteLevelBpe.Build(Words.SelectMany(w => new[] { w, " " + w }).Concat(["[\"", "\",\"", "\"]", " =>"]));
        var config = new TinyDecoderConfig(tokenizer.VocabSize, Hidden: 32, Heads: 4, Layers: 2, FeedForward: 64, ContextLength: 64);
        GenaiModelFolder.Write(folder, config, GenaiModelFolder.RandomWeights(config, seed: 1), tokenizer, maxLength: 64);
        return (folder, tokenizer);
    }

    [Fact]
    public void TheRuntimeTokenizerAgreesWithTheProjectsBpe()
    {
        var (folder, tokenizer) = UntrainedFolder();
        try
        {
            using var model = new GenaiTextModel(folder);
            foreach (string text in new[] { "a red cube and a blue sphere =>", "[\"cube\",\"sphere\"]", "a zorblax, on top of 3 Cubes!" })
            {
                Assert.Equal(tokenizer.Encode(text), model.Encode(text));
                Assert.Equal(text, model.Decode(tokenizer.Encode(text)));
            }
            Assert.Single(tokenizer.Encode(" sphere"));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void AnUntrainedFolderGeneratesThroughTheRuntime()
    {
        var (folder, _) = UntrainedFolder();
        try
        {
            using var model = new GenaiTextModel(folder);
            string one = model.Complete("a red cube =>", maxNewTokens: 5);
            Assert.Equal(one, model.Complete("a red cube =>", maxNewTokens: 5)); // greedy: deterministic
            var batch = model.CompleteBatch(["a red cube =>", "a blue sphere on top of a red cube =>"], maxNewTokens: 5);
            Assert.Equal(2, batch.Count);
            Assert.Equal(one, batch[0]);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void AnUntrainedModelsAnswersAreValidatedAndFallBack()
    {
        var (folder, _) = UntrainedFolder();
        try
        {
            var lexicon = new LexiconSubjects();
            using var model = new GenaiSubjectModel(folder, lexicon.IsLayout, constrained: true);
            var extractor = new SubjectExtractor(model, lexicon);
            var results = extractor.Extract(["a red cube and a blue sphere", "a blue cube on top of a red sphere"]);
            Assert.Equal(2, results.Count);
            Assert.True(model.Constrained, "the CPU GenAI package supports regex guidance");
            Assert.Equal(2, extractor.ModelAnswers + extractor.FallbackCount);
            foreach (var r in results)
            {
                Assert.NotEmpty(r.Subjects);
                Assert.DoesNotContain("top", r.Subjects);
                Assert.Equal(SubjectSource.Model, r.Source); // guidance keeps even an untrained model's answer valid
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}

using CTCal.Contracts;
using CTCal.Plugin.Onnx;
using CTCal.Plugin.Subjects;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// The plugin's <see cref="ISubjectFinder"/>: without <c>subjectsModel</c> the lexicon answers; with the shipped tiny
/// GenAI model (<c>assets/subjects-model</c>) the real ONNX Runtime GenAI runtime answers, its answer validated against the
/// prompt.
/// </summary>
public sealed class SubjectFinderTests
{
    private static string ShippedModel => Path.Combine(TestPaths.RepoRoot, "assets", "subjects-model");

    [Fact]
    public async Task WithoutAModelTheLexiconAnswers()
    {
        using var finder = new CtcalSubjectFinder(null, [ExecutionProviderKind.Cpu], new RecordingLog());

        var result = await finder.FindSubjectsAsync("a red cube to the left of a blue sphere");

        Assert.Equal("lexicon", result.Source);
        Assert.Equal(["cube", "sphere"], result.Subjects.Order());
        Assert.Null(result.Problem);
    }

    [Fact]
    public async Task WithTheShippedModelTheRuntimeAnswersWordsOfThePrompt()
    {
        var log = new RecordingLog();
        using var finder = new CtcalSubjectFinder(ShippedModel, [ExecutionProviderKind.Cpu], log);

        var result = await finder.FindSubjectsAsync("a red cube to the left of a blue sphere");
        var again = await finder.FindSubjectsAsync("two green triangles");

        Assert.Equal("model", result.Source);
        Assert.Equal(["cube", "sphere"], result.Subjects.Order());
        Assert.Equal("model", again.Source);
        Assert.Equal(["triangles"], again.Subjects);
        Assert.Single(log.Entries, e => e.Message.StartsWith("subjects: ", StringComparison.Ordinal)); // loaded once, on first use
    }
}

using CTCal.Subjects;
using Xunit;

namespace CTCal.Subjects.Tests;

/// <summary>The extractor validates each answer and falls back to the lexicon per caption, counting why.</summary>
public sealed class SubjectExtractorTests
{
    /// <summary>A model that answers from a table (a test double for the GenAI model).</summary>
    internal sealed class TableModel(Func<string, string> answer) : ISubjectModel
    {
        public int Calls { get; private set; }
        public int Captions { get; private set; }
        public string Name => "table";
        public bool Constrained => false;

        public IReadOnlyList<string> Answer(IReadOnlyList<string> captions)
        {
            Calls++;
            Captions += captions.Count;
            return captions.Select(answer).ToArray();
        }
    }

    [Fact]
    public void InvalidAnswersFallBackToTheLexiconAndAreCounted()
    {
        var model = new TableModel(c => c switch
        {
            "a red cube on top of a blue sphere" => "[\"cube\",\"sphere\"]",
            "a cat to the left of a dog" => "[\"left\"]",
            "two green triangles" => "not json",
            _ => "[\"pyramid\"]",
        });
        var extractor = new SubjectExtractor(model);
        var results = extractor.Extract(["a red cube on top of a blue sphere", "a cat to the left of a dog", "two green triangles", "a yellow star"]);

        Assert.Equal(SubjectSource.Model, results[0].Source);
        Assert.Equal(["cube", "sphere"], results[0].Subjects);
        Assert.Equal((SubjectSource.LexiconFallback, AnswerProblem.LayoutWord), (results[1].Source, results[1].Problem));
        Assert.Equal(["cat", "dog"], results[1].Subjects);
        Assert.Equal(AnswerProblem.NotAJsonList, results[2].Problem);
        Assert.Equal(["triangles"], results[2].Subjects);
        Assert.Equal(AnswerProblem.NotInCaption, results[3].Problem);
        Assert.Equal(1, extractor.ModelAnswers);
        Assert.Equal(3, extractor.FallbackCount);
        Assert.Equal(1, extractor.Fallbacks[AnswerProblem.LayoutWord]);
        Assert.Equal(1, model.Calls);
    }

    [Fact]
    public void ARuntimeFailureFallsBackForTheWholeBatch()
    {
        var extractor = new SubjectExtractor(new TableModel(_ => throw new InvalidOperationException("device lost")));
        var results = extractor.Extract(["a red cube", "a blue sphere"]);
        Assert.All(results, r => Assert.Equal(AnswerProblem.RuntimeError, r.Problem));
        Assert.Equal(["cube"], results[0].Subjects);
        Assert.Equal(2, extractor.Fallbacks[AnswerProblem.RuntimeError]);
    }
}

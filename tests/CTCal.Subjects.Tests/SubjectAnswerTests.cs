using System.Text.RegularExpressions;
using CTCal.Subjects;
using Xunit;

namespace CTCal.Subjects.Tests;

/// <summary>Prompt and answer format, parsing and validation against the caption.</summary>
public sealed class SubjectAnswerTests
{
    private static readonly LexiconSubjects Lexicon = new();

    private static IReadOnlyList<string>? Validate(string caption, string answer, out AnswerProblem problem) =>
        SubjectAnswer.Validate(caption, answer, Lexicon.IsLayout, out problem);

    [Fact]
    public void ThePromptIsTheNormalisedCaptionAndTheSeparator()
    {
        Assert.Equal(" a red cube on top of a blue sphere =>", SubjectPrompt.For("  A red Cube, on top of a blue sphere! "));
        Assert.Equal("[\" cube\",\" teddy bear\"]", SubjectPrompt.Answer(["Cube", "teddy  bear"]));
        Assert.Equal(["cube", "teddy bear"], SubjectAnswer.Parse(SubjectPrompt.Answer(["cube", "teddy bear"]))!);
    }

    [Fact]
    public void AValidAnswerKeepsCaptionWordsInLowerCaseWithoutRepeats()
    {
        var subjects = Validate("A Teddy Bear next to a red cube and a cube", "[\"teddy bear\", \"CUBE\", \"cube\"]", out var problem);
        Assert.Equal(AnswerProblem.None, problem);
        Assert.Equal(["teddy bear", "cube"], subjects!);
    }

    [Theory]
    [InlineData("a red cube on top of a blue sphere", "cube, sphere", AnswerProblem.NotAJsonList)]
    [InlineData("a red cube on top of a blue sphere", "[\"cube\", 3]", AnswerProblem.NotAJsonList)]
    [InlineData("a red cube on top of a blue sphere", "{\"subjects\": [\"cube\"]}", AnswerProblem.NotAJsonList)]
    [InlineData("a red cube on top of a blue sphere", "[]", AnswerProblem.Empty)]
    [InlineData("a red cube on top of a blue sphere", "[\" \"]", AnswerProblem.Empty)]
    [InlineData("a red cube on top of a blue sphere", "[\"cube\", \"pyramid\"]", AnswerProblem.NotInCaption)]
    [InlineData("a red cube on top of a blue sphere", "[\"red sphere\"]", AnswerProblem.NotInCaption)]
    [InlineData("a red cube on top of a blue sphere", "[\"cube!\"]", AnswerProblem.NotInCaption)]
    [InlineData("a red cube on top of a blue sphere", "[\"cube\", \"top\"]", AnswerProblem.LayoutWord)]
    [InlineData("a cat to the left of a dog", "[\"cat\", \"left\"]", AnswerProblem.LayoutWord)]
    [InlineData("a cat behind a dog", "[\"behind\"]", AnswerProblem.LayoutWord)]
    public void AnInvalidAnswerIsRejectedWithItsReason(string caption, string answer, AnswerProblem expected)
    {
        Assert.Null(Validate(caption, answer, out var problem));
        Assert.Equal(expected, problem);
    }

    [Fact]
    public void TheConstraintAllowsCaptionWordsAndPairsButNoLayoutWord()
    {
        var regex = new Regex("^" + SubjectPrompt.ConstraintRegex("a red cube on top of a blue sphere", Lexicon.IsLayout) + "$");
        Assert.Matches(regex, "[\" cube\",\" sphere\"]");
        Assert.Matches(regex, "[\" red cube\"]");
        Assert.DoesNotMatch(regex, "[\" top\"]");
        Assert.DoesNotMatch(regex, "[\" pyramid\"]");
        Assert.DoesNotMatch(regex, "[\" cube\", \" sphere\"]");
        Assert.Equal("\\[\\]", SubjectPrompt.ConstraintRegex("left", Lexicon.IsLayout));
    }

    [Fact]
    public void TheLexiconFindsTheNounsAndNoLayoutWord()
    {
        Assert.Equal(["cube", "sphere"], Lexicon.Of("a red cube on top of a blue sphere"));
        Assert.DoesNotContain("left", Lexicon.Of("a cat to the left of a dog"));
    }
}

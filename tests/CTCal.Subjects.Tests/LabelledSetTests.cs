using CTCal.Subjects;
using CTCal.Tests;
using Xunit;

namespace CTCal.Subjects.Tests;

/// <summary>The labelled benchmark set (tests/data/subjects/labelled.txt) is well formed, and scoring works.</summary>
public sealed class LabelledSetTests
{
    public static string LabelledFile => Path.Combine(TestPaths.Data, "subjects", "labelled.txt");

    [Fact]
    public void TheSetHasAtLeast200CaptionsWhoseLabelsAreCaptionWordsAndNoLayoutWord()
    {
        var items = SubjectScoring.Read(LabelledFile);
        Assert.True(items.Count >= 200, $"{items.Count} captions");
        var lexicon = new LexiconSubjects();
        foreach (var item in items)
        {
            // every label passes the same validation as a model answer
            var valid = SubjectAnswer.Validate(item.Caption, SubjectPrompt.Answer(item.Subjects), lexicon.IsLayout, out var problem);
            Assert.True(valid is not null, $"'{item.Caption}': label {string.Join(", ", item.Subjects)} fails validation ({problem})");
        }
        Assert.Equal(items.Count, items.Select(i => i.Caption).Distinct().Count());
    }

    [Fact]
    public void ScoringCountsSubjectWords()
    {
        LabelledSubjects[] items = [new("a teddy bear on a bed", ["teddy bear", "bed"]), new("a cat", ["cat"])];
        var score = SubjectScoring.Score(items, [["bear", "bed", "on"], ["cat"]]);
        Assert.Equal((3, 4, 4, 1), (score.TruePositives, score.Predicted, score.Labelled, score.ExactCaptions));
        Assert.Equal(0.75, score.Precision);
        Assert.Equal(0.75, score.Recall);
    }
}

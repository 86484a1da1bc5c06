using CTCal.Trainer.Calibration;
using Xunit;
using CTCal.Core.Text;

namespace CTCal.Trainer.Tests;

public sealed class NounSelectorTests
{
    private static readonly NounSelector Selector = new();

    /// <summary>Words split on spaces, one token each, position 0 being the start token.</summary>
    private static PromptWord[] Words(string prompt) =>
        prompt.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select((w, i) => new PromptWord(w, [i + 1])).ToArray();

    private static string[] Nouns(string prompt, params string[] subjects) =>
        Selector.Select(Words(prompt), subjects).Nouns.Select(n => n.Text).ToArray();

    [Fact]
    public void CubeAndSphereButNotTop()
    {
        var selection = Selector.Select(Words("a red cube on top of a blue sphere"));
        Assert.Equal(["cube", "sphere"], selection.Nouns.Select(n => n.Text));
        Assert.Equal([3], selection.Nouns[0].TokenPositions);
        Assert.Equal([9], selection.Nouns[1].TokenPositions);
        Assert.Equal(NounSource.Lexicon, selection.Source);
    }

    [Theory]
    [InlineData("three green triangles", new[] { "triangles" })]
    [InlineData("two dogs and a cat", new[] { "dogs", "cat" })]
    [InlineData("four puppies next to the boxes", new[] { "puppies", "boxes" })]
    [InlineData("two children and three mice", new[] { "children", "mice" })]
    [InlineData("the wolves and the knives", new[] { "wolves", "knives" })]
    public void PluralsAreNouns(string prompt, string[] expected) => Assert.Equal(expected, Nouns(prompt));

    [Theory]
    [InlineData("a cat to the left of a dog", new[] { "cat", "dog" })]
    [InlineData("a bird behind a tree, on the right side", new[] { "bird", "tree" })]
    [InlineData("a lamp in the middle of the bottom shelf", new[] { "lamp", "shelf" })]
    [InlineData("a book above a chair near the front", new[] { "book", "chair" })]
    public void DirectionAndLayoutWordsAreNeverNouns(string prompt, string[] expected)
    {
        // The tokenizer reports punctuation as its own word; emulate that for the comma.
        Assert.Equal(expected, Nouns(prompt.Replace(",", " ,")));
    }

    [Theory]
    [InlineData("an orange cube and an orange", new[] { "cube", "orange" })]
    [InlineData("a glass bottle on a wooden table", new[] { "bottle", "table" })]
    [InlineData("a teddy bear beside a coffee cup", new[] { "teddy bear", "coffee cup" })]
    public void ModifierNounsAndCompounds(string prompt, string[] expected) => Assert.Equal(expected, Nouns(prompt));

    [Theory]
    [InlineData("a shiny zorblax on the table", new[] { "zorblax", "table" })]
    [InlineData("two fluffy quokkas", new[] { "quokkas" })]
    [InlineData("a cat chases a mouse", new[] { "cat", "mouse" })]
    public void UnknownWordsEndingANounPhraseAreNouns(string prompt, string[] expected) => Assert.Equal(expected, Nouns(prompt));

    [Fact]
    public void PromptWithoutNounSelectsNothing()
    {
        Assert.Empty(Nouns("very bright and colourful"));
        Assert.Empty(Nouns("on the left"));
    }

    [Fact]
    public void ExplicitSubjectsWinAndMatchPluralsAndPhrases()
    {
        var selection = Selector.Select(Words("a teddy bear holding three balloons"), ["balloon", "teddy bear", "kite"]);
        Assert.Equal(NounSource.Subjects, selection.Source);
        Assert.Equal(["teddy bear", "balloons"], selection.Nouns.Select(n => n.Text));
        Assert.Equal([2, 3], selection.Nouns[0].TokenPositions);
        Assert.Equal(["kite"], selection.UnmatchedSubjects);
    }

    [Fact]
    public void SubWordTokensAndTruncatedWords()
    {
        PromptWord[] words = [new("a", [1]), new("giraffe", [2, 3]), new("and", [4]), new("a", [5]), new("zebra", [])];
        var selection = Selector.Select(words);
        var noun = Assert.Single(selection.Nouns);
        Assert.Equal("giraffe", noun.Text);
        Assert.Equal([2, 3], noun.TokenPositions);
    }

    [Fact]
    public void BundledLexiconLoads()
    {
        var lexicon = NounLexicon.Bundled;
        Assert.Contains("cube", lexicon.Nouns);
        Assert.Contains("top", lexicon.Layout);
        Assert.Equal("triangle", lexicon.NounLemma("triangles"));
        Assert.Equal("mouse", lexicon.NounLemma("mice"));
        Assert.Equal("puppy", lexicon.NounLemma("puppies"));
        Assert.Null(lexicon.NounLemma("zorblax"));
    }
}

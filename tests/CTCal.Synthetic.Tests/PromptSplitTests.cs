using Xunit;

namespace CTCal.Synthetic.Tests;

/// <summary>The validation / test split of the evaluation prompts: disjoint, outside training, stratified, seeded.</summary>
public sealed class PromptSplitTests
{
    private static readonly SyntheticWorld World = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 11, TrainCount = 10 });

    [Theory]
    [InlineData(1UL)]
    [InlineData(11UL)]
    [InlineData(12345UL)]
    public void SidesShareNoSceneNoTextAndNoTrainingPrompt(ulong seed)
    {
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = seed, TrainCount = 10 });
        var split = PromptSplit.Create(world);
        var trainKeys = world.TrainSpecs.Select(s => s.CanonicalKey).ToHashSet();
        var trainTexts = world.TrainSpecs.Select(CaptionGrammar.Caption).ToHashSet();
        var validationKeys = split.Validation.Select(p => p.Spec.CanonicalKey).ToHashSet();
        var validationTexts = split.Validation.Select(p => p.Prompt).ToHashSet();

        Assert.NotEmpty(split.Validation);
        Assert.NotEmpty(split.Test);
        Assert.DoesNotContain(split.Test, p => validationKeys.Contains(p.Spec.CanonicalKey) || validationTexts.Contains(p.Prompt));
        Assert.DoesNotContain(split.Validation.Concat(split.Test), p => trainKeys.Contains(p.Spec.CanonicalKey) || trainTexts.Contains(p.Prompt));
        // One prompt per scene group on each side, each one a caption of its spec.
        Assert.Equal(split.Validation.Count, validationKeys.Count);
        Assert.Equal(split.Test.Count, split.Test.Select(p => p.Spec.CanonicalKey).Distinct().Count());
        Assert.All(split.Validation.Concat(split.Test), p => Assert.Equal(p.Spec, CaptionGrammar.Parse(p.Prompt)));
        Assert.All(split.Validation.Concat(split.Test), p => Assert.Equal(world.NamesHeldOutPair(p.Spec), p.HeldOutPair));
    }

    [Fact]
    public void CountsAreStratifiedByCategoryAndHeldOutFlag()
    {
        var split = PromptSplit.Create(World, new PromptSplitOptions { ValidationPerCategory = 6, TestPerCategory = 6 });
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            foreach (var side in new[] { split.Validation, split.Test })
            {
                var mine = side.Where(p => p.Category == category).ToList();
                Assert.Equal(6, mine.Count);
                Assert.Equal(3, mine.Count(p => p.HeldOutPair));
            }
        }
        Assert.Empty(split.Shortfalls);
        Assert.Equal(6, split.Strata.Count);
        Assert.All(split.Strata, s => Assert.Equal(3, s.Validation));
        Assert.All(split.Strata, s => Assert.Equal(3, s.Test));
    }

    [Fact]
    public void DefaultSplitUsesWhatTheGrammarHasAndSaysWhereItFallsShort()
    {
        var split = PromptSplit.Create(World);
        foreach (var stratum in split.Strata)
        {
            Assert.Equal(stratum.Validation, split.Validation.Count(p => p.Category == stratum.Category && p.HeldOutPair == stratum.HeldOutPair));
            Assert.Equal(stratum.Test, split.Test.Count(p => p.Category == stratum.Category && p.HeldOutPair == stratum.HeldOutPair));
            Assert.True(stratum.Validation + stratum.Test <= stratum.AvailableGroups, $"{stratum}");
        }

        // The grammar's evaluation groups with 4 held-out pairs and EvalFraction 0.15 (24 colour-shape objects):
        // binding 4 single + 54 two-object held-out-pair groups and 15% of the other 126; counting 4 x 2 held-out-pair
        // groups and 15% of the other 40; spatial 344 held-out-pair groups and 15% of the other 760.
        Assert.Equal(new[] { 58, 19, 8, 6, 344, 114 }, split.Strata.Select(s => s.AvailableGroups));
        Assert.Equal(new[] { 29, 10, 4, 3, 20, 20 }, split.Strata.Select(s => s.Validation));
        Assert.Equal(new[] { 29, 9, 4, 3, 20, 20 }, split.Strata.Select(s => s.Test));

        // Spatial has hundreds of evaluation groups: 40 + 40, half held-out.
        Assert.Equal(40, split.Validation.Count(p => p.Category == PromptCategory.Spatial));
        Assert.Equal(20, split.Test.Count(p => p.Category == PromptCategory.Spatial && p.HeldOutPair));
        // Counting has 48 groups in the whole grammar and only a few are evaluation groups: every one is used, and the
        // shortfall is reported.
        var counting = split.Strata.Where(s => s.Category == PromptCategory.Counting).ToList();
        Assert.Equal(counting.Sum(s => s.AvailableGroups), counting.Sum(s => s.Validation + s.Test));
        Assert.True(counting.Sum(s => s.AvailableGroups) < 80);
        Assert.Contains(split.Shortfalls, s => s.StartsWith("validation Counting:", StringComparison.Ordinal));
        Assert.Contains(split.Shortfalls, s => s.StartsWith("test Counting:", StringComparison.Ordinal));
    }

    [Fact]
    public void SameSeedSameSplitOtherSeedDiffers()
    {
        static string Text(PromptSplit s) => string.Join("\n", s.Validation.Select(p => "v " + p.Prompt).Concat(s.Test.Select(p => "t " + p.Prompt)));
        var again = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 11, TrainCount = 10 });
        var other = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 12, TrainCount = 10 });
        Assert.Equal(Text(PromptSplit.Create(World)), Text(PromptSplit.Create(again)));
        Assert.NotEqual(Text(PromptSplit.Create(World)), Text(PromptSplit.Create(other)));
    }

    [Fact]
    public void IsHeldBackKnowsEveryPhrasingOfASplitScene()
    {
        var split = PromptSplit.Create(World);
        var binding = split.Test.First(p => p.Category == PromptCategory.Binding && p.Spec.Objects.Count == 2);
        var swapped = SceneSpec.Binding(binding.Spec.Objects[1], binding.Spec.Objects[0]);
        Assert.True(split.IsHeldBack(binding.Prompt));
        Assert.True(split.IsHeldBack(CaptionGrammar.Caption(swapped)));
        Assert.False(split.IsHeldBack(CaptionGrammar.Caption(World.TrainSpecs[0])));
        Assert.False(split.IsHeldBack("not a caption of this world"));
    }

    [Fact]
    public void BothSidesRoundTripThroughTheEvalPromptFile()
    {
        var split = PromptSplit.Create(World);
        string dir = Path.Combine(Path.GetTempPath(), "ctcal-split-" + Guid.NewGuid().ToString("N"));
        try
        {
            string path = Path.Combine(dir, "test_prompts.json");
            DatasetWriter.WriteEvalPrompts(World, split.Test, path);
            var back = DatasetWriter.ReadEvalPrompts(path);
            Assert.Equal(split.Test.Select(p => (p.Prompt, p.Category, p.HeldOutPair)), back.Select(p => (p.Prompt, p.Category, p.HeldOutPair)));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void NegativeCountsAreRefused()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => PromptSplit.Create(World, new PromptSplitOptions { TestPerCategory = -1 }));
        Assert.Contains("TestPerCategory", e.Message);
    }
}

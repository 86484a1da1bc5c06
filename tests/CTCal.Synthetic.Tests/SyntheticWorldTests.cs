using System.Security.Cryptography;
using System.Text;
using Xunit;

namespace CTCal.Synthetic.Tests;

/// <summary>Determinism of the generator and the train/evaluation split.</summary>
public sealed class SyntheticWorldTests
{
    private static readonly SyntheticWorld World = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 11, TrainCount = 300 });

    private static string Hash(SyntheticWorldOptions options)
    {
        var world = SyntheticWorld.Create(options);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var r in world.TrainRecords)
        {
            sha.AppendData(Encoding.UTF8.GetBytes(r.FileName + "\n" + r.Caption + "\n" + string.Join(",", r.Subjects) + "\n"));
            sha.AppendData(r.Render().EncodePng());
        }
        foreach (var p in world.EvalPrompts) sha.AppendData(Encoding.UTF8.GetBytes($"{p.Prompt}|{p.Category}|{p.HeldOutPair}\n"));
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    [Fact]
    public void SameSeedGivesIdenticalPngsAndCaptionsOtherSeedDiffers()
    {
        var options = new SyntheticWorldOptions { Seed = 5, TrainCount = 40 };
        string first = Hash(options);
        Assert.Equal(first, Hash(options));
        Assert.NotEqual(first, Hash(options with { Seed = 6 }));
    }

    [Fact]
    public void TrainAndEvalPromptsAreDisjoint()
    {
        var trainKeys = World.TrainSpecs.Select(s => s.CanonicalKey).ToHashSet();
        var trainCaptions = World.TrainSpecs.Select(CaptionGrammar.Caption).ToHashSet();
        Assert.DoesNotContain(World.EvalSpecs, s => trainKeys.Contains(s.CanonicalKey));
        Assert.DoesNotContain(World.EvalPrompts, p => trainCaptions.Contains(p.Prompt) || trainKeys.Contains(p.Spec.CanonicalKey));
        Assert.All(World.TrainRecords, r => Assert.Contains(r.Caption, trainCaptions));
        // Every grammar prompt lands on exactly one side.
        int all = SyntheticWorld.EnumerateGroups().Sum(g => g.Length);
        Assert.Equal(all, World.TrainSpecs.Count + World.EvalSpecs.Count);
    }

    [Fact]
    public void HeldOutPairsNeverAppearInTrainingCaptions()
    {
        Assert.Equal(4, World.HeldOutPairs.Count);
        var phrases = World.HeldOutPairs.Select(p => $"{Palette.Word(p.Color)} {Shapes.Noun(p.Shape)}").ToArray();
        foreach (string caption in World.TrainSpecs.Select(CaptionGrammar.Caption).Concat(World.TrainRecords.Select(r => r.Caption)))
        {
            Assert.DoesNotContain(CaptionGrammar.Parse(caption).Pairs, p => World.HeldOutPairs.Contains(p));
            Assert.DoesNotContain(phrases, ph => caption.Contains(ph, StringComparison.Ordinal));
        }
        Assert.DoesNotContain(World.TrainRecords.SelectMany(r => r.Scene.Objects), o => World.HeldOutPairs.Contains((o.Color, o.Shape)));
        // Every colour and every shape still trains.
        var trained = World.TrainSpecs.SelectMany(s => s.Pairs).ToHashSet();
        Assert.All(Palette.All, c => Assert.Contains(trained, p => p.Item1 == c));
        Assert.All(Shapes.All, s => Assert.Contains(trained, p => p.Item2 == s));
    }

    [Fact]
    public void EvalPromptsHoldFlaggedHeldOutPairsInEveryCategory()
    {
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var prompts = World.EvalPrompts.Where(p => p.Category == category).ToList();
            int groups = World.EvalSpecs.Where(s => s.Category == category).Select(s => s.CanonicalKey).Distinct().Count();
            Assert.Equal(Math.Min(World.Options.EvalPromptsPerCategory, groups), prompts.Count);
            Assert.Contains(prompts, p => p.HeldOutPair);
            Assert.Contains(prompts, p => !p.HeldOutPair);
        }
        Assert.All(World.EvalPrompts, p =>
        {
            Assert.Equal(p.HeldOutPair, World.NamesHeldOutPair(p.Spec));
            Assert.Equal(p.Spec, CaptionGrammar.Parse(p.Prompt));
            Assert.Equal(p.Category, p.Spec.Category);
        });
        Assert.Equal(World.EvalPrompts.Count, World.EvalPrompts.Select(p => p.Spec.CanonicalKey).Distinct().Count());
    }

    [Fact]
    public void RecordsCarryTheirSceneAndSubjects()
    {
        Assert.All(World.TrainRecords, r =>
        {
            Assert.Equal($"{r.Index:D5}.png", r.FileName);
            Assert.Equal(r.Spec, CaptionGrammar.Parse(r.Caption));
            Assert.Equal(r.Spec.ObjectCount, r.Scene.Objects.Count);
            var words = r.Caption.Split(' ');
            Assert.All(r.Subjects, s => Assert.Contains(s, words));
        });
        var categories = World.TrainRecords.GroupBy(r => r.Spec.Category).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(3, categories.Count);
    }

    [Fact]
    public void BadOptionsAreRefusedNamingTheSetting()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticWorld.Create(new SyntheticWorldOptions { HeldOutPairCount = 9 }));
        Assert.Contains("HeldOutPairCount", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticWorld.Create(new SyntheticWorldOptions { ImageSize = 8, TrainCount = 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticWorld.Create(new SyntheticWorldOptions { EvalFraction = 1.5 }));
    }
}

using CTCal.MainJob.Study;
using CTCal.Synthetic;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>GORS-style selection: reward threshold, caps, guards against evaluation seeds and prompts, the dataset written.</summary>
public sealed class GorsSelectionTests
{
    private static readonly SyntheticWorld World = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 11, TrainCount = 10 });
    private static readonly PromptSplit Split = PromptSplit.Create(World);
    private static readonly GorsGuard Guard = GorsGuard.For(World, Split, new MainJobRecipe());

    /// <summary>Five training prompts per category (two-object ones where the category has them), seeds 2000..2005.</summary>
    private static List<GorsCandidate> Candidates(Func<int, long, bool> pass, string imageFolder = "/nonexistent")
    {
        var result = new List<GorsCandidate>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var specs = World.TrainSpecs.Where(s => s.Category == category && (category == PromptCategory.Counting || s.Objects.Count == 2)).Take(5).ToList();
            for (int p = 0; p < specs.Count; p++)
            {
                for (long seed = 2000; seed < 2006; seed++)
                {
                    string prompt = CaptionGrammar.Caption(specs[p]);
                    result.Add(new GorsCandidate(prompt, specs[p], seed, AggregationTests.Score(category, pass(p, seed)),
                        Path.Combine(imageFolder, $"{category}-{p}-{seed}.png")));
                }
            }
        }

        return result;
    }

    [Fact]
    public void OnlyPassingImagesAreKeptWithWeightOne()
    {
        var candidates = Candidates((p, s) => (p + s) % 3 != 0);
        var selection = GorsSelection.Select(candidates, Guard, new GorsOptions { CapPerCategory = 1000, MaxPerPrompt = 100 });
        Assert.All(selection.Kept, k => Assert.Equal(1, k.Candidate.Reward));
        Assert.All(selection.Kept, k => Assert.Equal(1, k.Weight));
        Assert.Equal(candidates.Count(c => c.Reward == 1), selection.Kept.Count);
        Assert.Equal(90, selection.Candidates);
        foreach (var summary in selection.Categories)
        {
            Assert.Equal(30, summary.Candidates);
            Assert.Equal(20, summary.Passed);
            Assert.Equal(20, summary.Kept);
            Assert.Equal(2.0 / 3, summary.PassRate, 12);
        }

        // A failing image whose other checks pass (spatial: binding 1, spatial 0) is still a failure.
        var spatialFail = candidates.First(c => c.Category == PromptCategory.Spatial && c.Reward == 0);
        Assert.Equal(1, spatialFail.Score.Binding);
        Assert.DoesNotContain(selection.Kept, k => k.Candidate == spatialFail);
    }

    [Fact]
    public void CapsHoldPerCategoryAndPerPromptAndSpreadOverPrompts()
    {
        var candidates = Candidates((p, s) => true);
        var selection = GorsSelection.Select(candidates, Guard, new GorsOptions { CapPerCategory = 7, MaxPerPrompt = 2 });
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var mine = selection.Kept.Where(k => k.Candidate.Category == category).ToList();
            Assert.Equal(7, mine.Count);
            Assert.All(mine.GroupBy(k => k.Candidate.Prompt), g => Assert.True(g.Count() <= 2));
            // Round-robin: every one of the five prompts gets one image before any gets a second.
            Assert.Equal(5, mine.Select(k => k.Candidate.Prompt).Distinct().Count());
            Assert.Equal(5, selection.Categories.Single(c => c.Category == category).KeptPrompts);
        }

        var perPrompt = GorsSelection.Select(candidates, Guard, new GorsOptions { CapPerCategory = 1000, MaxPerPrompt = 3 });
        Assert.Equal(3 * 5 * 3, perPrompt.Kept.Count);
        Assert.Empty(GorsSelection.Select(candidates, Guard, new GorsOptions { CapPerCategory = 0 }).Kept);
    }

    [Fact]
    public void EvaluationImageSeedsAreRefused()
    {
        Assert.Equal(new long[] { 1000, 1001 }, GorsGuard.EvaluationSeedsOf(new MainJobRecipe()).Order());
        var candidates = Candidates((p, s) => true);
        // Even a failing candidate: a generation seed shared with evaluation is a setup error.
        candidates.Add(candidates[0] with { GenerationSeed = 1001, Score = AggregationTests.Score(PromptCategory.Binding, false) });
        var e = Assert.Throws<ArgumentException>(() => GorsSelection.Select(candidates, Guard));
        Assert.Contains("generation seed 1001", e.Message);
        Assert.Contains("evaluation image seed", e.Message);

        var wider = GorsGuard.For(World, Split, new MainJobRecipe { ImageSeedBase = 2000, ImageSeeds = 4 });
        Assert.Contains("generation seed 2000", Assert.Throws<ArgumentException>(() => GorsSelection.Select(Candidates((p, s) => true), wider)).Message);
    }

    [Fact]
    public void ValidationTestAndNonTrainingPromptsAreRefused()
    {
        var validation = Split.Validation.First(p => p.Category == PromptCategory.Binding && p.Spec.Objects.Count == 2);
        var swapped = SceneSpec.Binding(validation.Spec.Objects[1], validation.Spec.Objects[0]);
        var test = Split.Test.First(p => p.Category == PromptCategory.Spatial);
        var outside = World.EvalSpecs.First(s => !Split.IsHeldBack(s));
        var good = Candidates((p, s) => true)[0];

        foreach (var (spec, expected) in new[]
                 {
                     (validation.Spec, "validation or test prompt"),
                     (swapped, "validation or test prompt"),
                     (test.Spec, "validation or test prompt"),
                     (outside, "not a training-split prompt"),
                 })
        {
            var bad = good with { Prompt = CaptionGrammar.Caption(spec), Spec = spec, Score = AggregationTests.Score(spec.Category, false) };
            var e = Assert.Throws<ArgumentException>(() => GorsSelection.Select([good, bad], Guard));
            Assert.Contains(expected, e.Message);
            Assert.Contains(bad.Prompt, e.Message);
        }

        var mislabelled = good with { Prompt = CaptionGrammar.Caption(World.TrainSpecs.First(s => !s.Equals(good.Spec))) };
        Assert.Contains("does not describe its spec", Assert.Throws<ArgumentException>(() => GorsSelection.Select([mislabelled], Guard)).Message);
        Assert.Contains("given twice", Assert.Throws<ArgumentException>(() => GorsSelection.Select([good, good], Guard)).Message);
    }

    [Fact]
    public void SelectionIsSeededAndIndependentOfInputOrder()
    {
        var candidates = Candidates((p, s) => s % 2 == 0 || p == 1);
        var options = new GorsOptions { CapPerCategory = 6, MaxPerPrompt = 2, Seed = 3 };
        static string Keys(GorsSelection s) => string.Join("|", s.Kept.Select(k => $"{k.Candidate.Prompt}#{k.Candidate.GenerationSeed}"));
        string first = Keys(GorsSelection.Select(candidates, Guard, options));
        var reversed = Enumerable.Reverse(candidates).ToList();
        Assert.Equal(first, Keys(GorsSelection.Select(reversed, Guard, options)));
        Assert.NotEqual(first, Keys(GorsSelection.Select(candidates, Guard, options with { Seed = 4 })));
    }

    [Fact]
    public void WrittenDatasetReadsBackAndRefusesAFullFolderAndABadImage()
    {
        string root = Path.Combine(Path.GetTempPath(), "ctcal-gors-" + Guid.NewGuid().ToString("N"));
        try
        {
            string images = Path.Combine(root, "generated");
            Directory.CreateDirectory(images);
            var candidates = Candidates((p, s) => s < 2002, images);
            var sampler = new SceneSampler(64);
            foreach (var c in candidates)
            {
                var scene = sampler.Sample(c.Spec, new SeededRandom((ulong)c.GenerationSeed));
                File.WriteAllBytes(c.ImagePath, Renderer.Render(scene).EncodePng());
            }

            var selection = GorsSelection.Select(candidates, Guard, new GorsOptions { MaxPerPrompt = 1 });
            Assert.Equal(15, selection.Kept.Count);
            string data = Path.Combine(root, "gors-data");
            var written = GorsDatasetWriter.Write(selection, data);

            var back = DatasetWriter.ReadMetadata(Path.Combine(data, DatasetWriter.MetadataFileName));
            Assert.Equal(15, back.Count);
            for (int i = 0; i < back.Count; i++)
            {
                var kept = selection.Kept[i].Candidate;
                Assert.Equal(written[i].FileName, back[i].FileName);
                Assert.Equal(kept.Prompt, back[i].Text);
                Assert.Equal(CaptionGrammar.Subjects(kept.Spec), back[i].Subjects);
                Assert.Equal(File.ReadAllBytes(kept.ImagePath), File.ReadAllBytes(Path.Combine(data, back[i].FileName)));
            }

            Assert.True(File.Exists(Path.Combine(data, GorsDatasetWriter.SelectionFileName)));
            Assert.Contains("\"kept\": 5", File.ReadAllText(Path.Combine(data, GorsDatasetWriter.SelectionFileName)));
            Assert.Empty(Directory.GetFiles(data, "*.tmp"));

            Assert.Contains("not empty", Assert.Throws<IOException>(() => GorsDatasetWriter.Write(selection, data)).Message);

            File.WriteAllText(selection.Kept[3].Candidate.ImagePath, "not a png");
            var e = Assert.Throws<InvalidDataException>(() => GorsDatasetWriter.Write(selection, Path.Combine(root, "other")));
            Assert.Contains(selection.Kept[3].Candidate.ImagePath, e.Message);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }
}

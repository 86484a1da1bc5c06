namespace CTCal.Synthetic;

/// <summary>How many prompts <see cref="PromptSplit"/> draws per category for each side.</summary>
public sealed record PromptSplitOptions
{
    /// <summary>Validation prompts per category (every choice of weight, learning rate or step count is made on these).</summary>
    public int ValidationPerCategory { get; init; } = 40;

    /// <summary>Test prompts per category (the reported table only).</summary>
    public int TestPerCategory { get; init; } = 40;
}

/// <summary>
/// One stratum of a <see cref="PromptSplit"/>: a category and held-out-pair flag, how many evaluation groups (distinct
/// <see cref="SceneSpec.CanonicalKey"/>s) the world has there, and how many went to each side.
/// </summary>
public sealed record PromptSplitStratum(PromptCategory Category, bool HeldOutPair, int AvailableGroups, int Validation, int Test);

/// <summary>
/// A validation / test split of a world's evaluation prompts, for a study that tunes on one set and reports on the
/// other. Both sides are drawn from <see cref="SyntheticWorld.EvalSpecs"/> (never from the training groups), one prompt
/// per canonical scene group, so no scene description (<see cref="SceneSpec.CanonicalKey"/>) and no prompt text is on
/// both sides or in <see cref="SyntheticWorld.TrainSpecs"/>.
/// </summary>
/// <remarks>
/// Per category and held-out-pair flag (the strata), the world's evaluation groups are shuffled with a stream of the
/// world seed; the first share of each shuffled stratum (proportional to the requested validation count) can go to
/// validation, the rest to test, so the two sides come from disjoint ranges of one list. Each side then takes, per
/// category, half held-out-pair groups where enough exist (as <see cref="SyntheticWorld.EvalPrompts"/> does), and one
/// seeded phrasing of each group. Where the grammar has fewer groups than requested (counting: 24 colour-shape objects
/// x 2 counts in all, of which only the held-out-pair groups and <see cref="SyntheticWorldOptions.EvalFraction"/> of
/// the rest are evaluation groups) a side gets fewer prompts; <see cref="Strata"/> and <see cref="Shortfalls"/> say so.
/// The split does not depend on <see cref="SyntheticWorldOptions.EvalPromptsPerCategory"/> and does not change
/// <see cref="SyntheticWorld.EvalPrompts"/> (the main job's prompt file), which overlaps both sides.
/// </remarks>
public sealed class PromptSplit
{
    /// <summary>The world-seed stream of the split (the world uses 1 to 3 and 1000 up).</summary>
    public const ulong SplitStream = 4;

    private PromptSplit(PromptSplitOptions options, IReadOnlyList<EvalPrompt> validation, IReadOnlyList<EvalPrompt> test,
        IReadOnlyList<PromptSplitStratum> strata, IReadOnlyList<string> shortfalls)
    {
        Options = options;
        Validation = validation;
        Test = test;
        Strata = strata;
        Shortfalls = shortfalls;
        HeldBackKeys = validation.Concat(test).Select(p => p.Spec.CanonicalKey).ToHashSet(StringComparer.Ordinal);
        HeldBackTexts = validation.Concat(test).Select(p => p.Prompt).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>The requested counts.</summary>
    public PromptSplitOptions Options { get; }

    /// <summary>Validation prompts, by category (binding, counting, spatial), held-out-pair prompts first in each.</summary>
    public IReadOnlyList<EvalPrompt> Validation { get; }

    /// <summary>Test prompts, ordered as <see cref="Validation"/>.</summary>
    public IReadOnlyList<EvalPrompt> Test { get; }

    /// <summary>Available groups and the counts drawn, per category and held-out-pair flag.</summary>
    public IReadOnlyList<PromptSplitStratum> Strata { get; }

    /// <summary>One sentence per side and category that got fewer prompts than requested; empty when none did.</summary>
    public IReadOnlyList<string> Shortfalls { get; }

    /// <summary>Canonical keys of every validation and test prompt.</summary>
    public IReadOnlySet<string> HeldBackKeys { get; }

    /// <summary>Text of every validation and test prompt.</summary>
    public IReadOnlySet<string> HeldBackTexts { get; }

    /// <summary>Whether <paramref name="spec"/> describes a validation or test scene (any phrasing).</summary>
    public bool IsHeldBack(SceneSpec spec) => HeldBackKeys.Contains(spec.CanonicalKey);

    /// <summary>Whether <paramref name="prompt"/> is a validation or test prompt's text, or any phrasing of one's scene.</summary>
    public bool IsHeldBack(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (HeldBackTexts.Contains(prompt)) return true;
        try
        {
            return IsHeldBack(CaptionGrammar.Parse(prompt));
        }
        catch (FormatException)
        {
            return false; // not a caption of this world's grammar, so not one of its scenes
        }
    }

    /// <summary>Splits <paramref name="world"/>'s evaluation groups; deterministic for the world seed and the options.</summary>
    public static PromptSplit Create(SyntheticWorld world, PromptSplitOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(world);
        options ??= new PromptSplitOptions();
        if (options.ValidationPerCategory < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.ValidationPerCategory, "ValidationPerCategory must be >= 0");
        if (options.TestPerCategory < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.TestPerCategory, "TestPerCategory must be >= 0");

        // Evaluation groups in the world's (deterministic) order of first appearance.
        var groups = world.EvalSpecs.GroupBy(s => s.CanonicalKey, StringComparer.Ordinal).Select(g => g.ToArray()).ToList();
        var rng = SeededRandom.ForStream(world.Options.Seed, SplitStream);
        int v = options.ValidationPerCategory, t = options.TestPerCategory;
        double validationShare = v + t == 0 ? 0.5 : (double)v / (v + t);
        var validation = new List<EvalPrompt>();
        var test = new List<EvalPrompt>();
        var strata = new List<PromptSplitStratum>();
        var shortfalls = new List<string>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var held = groups.Where(g => g[0].Category == category && world.NamesHeldOutPair(g[0])).ToList();
            var seen = groups.Where(g => g[0].Category == category && !world.NamesHeldOutPair(g[0])).ToList();
            rng.Shuffle(held);
            rng.Shuffle(seen);
            int heldForValidation = (int)Math.Round(held.Count * validationShare);
            int seenForValidation = (int)Math.Round(seen.Count * validationShare);
            var (vHeld, vSeen) = Quota(v, heldForValidation, seenForValidation);
            var (tHeld, tSeen) = Quota(t, held.Count - heldForValidation, seen.Count - seenForValidation);
            var vGroups = held.Take(vHeld).Select(g => (g, true)).Concat(seen.Take(vSeen).Select(g => (g, false))).ToList();
            var tGroups = held.Skip(heldForValidation).Take(tHeld).Select(g => (g, true))
                .Concat(seen.Skip(seenForValidation).Take(tSeen).Select(g => (g, false))).ToList();
            validation.AddRange(vGroups.Select(x => Prompt(x.g, x.Item2)));
            test.AddRange(tGroups.Select(x => Prompt(x.g, x.Item2)));
            strata.Add(new PromptSplitStratum(category, true, held.Count, vHeld, tHeld));
            strata.Add(new PromptSplitStratum(category, false, seen.Count, vSeen, tSeen));
            if (vHeld + vSeen < v)
                shortfalls.Add($"validation {category}: {vHeld + vSeen} of {v} prompts ({held.Count} held-out-pair and {seen.Count} seen evaluation groups in the world for both sides)");
            if (tHeld + tSeen < t)
                shortfalls.Add($"test {category}: {tHeld + tSeen} of {t} prompts ({held.Count} held-out-pair and {seen.Count} seen evaluation groups in the world for both sides)");
        }

        // The construction keeps the sides apart; check it anyway, since every study result rests on it.
        var trainKeys = world.TrainSpecs.Select(s => s.CanonicalKey).ToHashSet(StringComparer.Ordinal);
        var validationKeys = validation.Select(p => p.Spec.CanonicalKey).ToHashSet(StringComparer.Ordinal);
        if (test.FirstOrDefault(p => validationKeys.Contains(p.Spec.CanonicalKey)) is { } both)
            throw new InvalidOperationException($"prompt split: '{both.Prompt}' is on both sides");
        if (validation.Concat(test).FirstOrDefault(p => trainKeys.Contains(p.Spec.CanonicalKey)) is { } trained)
            throw new InvalidOperationException($"prompt split: '{trained.Prompt}' is a training prompt");
        return new PromptSplit(options, validation, test, strata, shortfalls);

        EvalPrompt Prompt(SceneSpec[] group, bool heldOut)
        {
            var spec = group[rng.NextInt(group.Length)];
            return new EvalPrompt(CaptionGrammar.Caption(spec), spec.Category, spec, heldOut, CaptionGrammar.Subjects(spec));
        }
    }

    /// <summary>Held-out-pair and seen counts for <paramref name="n"/> prompts: half held-out where enough exist.</summary>
    private static (int Held, int Seen) Quota(int n, int heldAvailable, int seenAvailable)
    {
        int held = Math.Min(heldAvailable, Math.Max(n / 2, n - seenAvailable));
        int seen = Math.Min(seenAvailable, n - held);
        return (held, seen);
    }
}

using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// One image the model generated for a training-split prompt, with the evaluator's verdict. Its reward is the
/// category's own check (<see cref="ImageScore.Primary"/>: binding, counting or spatial), 1 (pass) or 0 (fail).
/// </summary>
/// <param name="Prompt">The prompt text.</param>
/// <param name="Spec">The scene the prompt asks for (its <see cref="SceneSpec.Category"/> is the candidate's category).</param>
/// <param name="GenerationSeed">Seed the image was generated with.</param>
/// <param name="Score">The evaluator's result for the image against <paramref name="Spec"/>.</param>
/// <param name="ImagePath">The generated PNG.</param>
public sealed record GorsCandidate(string Prompt, SceneSpec Spec, long GenerationSeed, ImageScore Score, string ImagePath)
{
    /// <summary>The prompt's category.</summary>
    public PromptCategory Category => Spec.Category;

    /// <summary>The reward: the category's check, 1 or 0.</summary>
    public double Reward => Score.Primary(Spec.Category);
}

/// <summary>Settings of <see cref="GorsSelection.Select"/>.</summary>
public sealed record GorsOptions
{
    /// <summary>Most images kept per category.</summary>
    public int CapPerCategory { get; init; } = 500;

    /// <summary>Most images kept per prompt.</summary>
    public int MaxPerPrompt { get; init; } = 4;

    /// <summary>Seed of the choice among passing images when a cap binds.</summary>
    public ulong Seed { get; init; } = 1;
}

/// <summary>One category of a selection: candidates, passing candidates (reward 1), kept images and prompts.</summary>
public sealed record GorsCategorySummary(PromptCategory Category, int Candidates, int Passed, int Kept, int KeptPrompts)
{
    /// <summary>Share of the candidates that passed (NaN without candidates).</summary>
    public double PassRate => Candidates == 0 ? double.NaN : (double)Passed / Candidates;
}

/// <summary>An image kept for fine-tuning, with its loss weight (the reward: 1, as only passing images are kept).</summary>
public sealed record GorsKept(GorsCandidate Candidate, double Weight);

/// <summary>
/// GORS-style selection of fine-tuning data (Generative mOdel fine-tuning with Reward-driven Sample selection, Huang et
/// al., T2I-CompBench, NeurIPS 2023): the model's own generations for compositional training prompts, kept where the
/// reward is high, the loss weighted by the reward. Here the reward is the rule-based evaluator's category check, so
/// only images with reward 1 are kept (weight 1).
/// </summary>
/// <remarks>
/// Refuses the whole input (<see cref="ArgumentException"/> naming the first offenders) when any candidate, passing or
/// not, was generated with an evaluation image seed, is a validation or test prompt, is not a training-split prompt
/// (when the guard knows the split), has a prompt text that does not parse to its spec, or repeats a (prompt, seed).
/// Choice: candidates are put in a canonical order (prompt text, seed), so input order does not matter; per category
/// the prompts with a passing image and each prompt's passing images are shuffled with a seeded stream, then images
/// are taken round-robin over the prompts (every prompt's first, then every prompt's second, ...) up to
/// <see cref="GorsOptions.MaxPerPrompt"/> per prompt and <see cref="GorsOptions.CapPerCategory"/> per category, which
/// spreads a capped category over as many prompts as possible.
/// </remarks>
public sealed record GorsSelection(GorsOptions Options, IReadOnlyList<GorsKept> Kept, IReadOnlyList<GorsCategorySummary> Categories)
{
    /// <summary>Number of candidates over all categories.</summary>
    public int Candidates => Categories.Sum(c => c.Candidates);

    /// <summary>Selects from <paramref name="candidates"/>; deterministic for the options' seed.</summary>
    /// <exception cref="ArgumentException">A candidate breaks the guard or is malformed.</exception>
    public static GorsSelection Select(IEnumerable<GorsCandidate> candidates, GorsGuard guard, GorsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(guard);
        options ??= new GorsOptions();
        if (options.CapPerCategory < 0) throw new ArgumentOutOfRangeException(nameof(options), options.CapPerCategory, "CapPerCategory must be >= 0");
        if (options.MaxPerPrompt < 1) throw new ArgumentOutOfRangeException(nameof(options), options.MaxPerPrompt, "MaxPerPrompt must be >= 1");

        var all = candidates.ToList();
        var problems = new List<string>();
        var seen = new HashSet<(string, long)>();
        foreach (var c in all)
        {
            if (c is null)
            {
                problems.Add("a candidate is null");
                continue;
            }

            if (guard.Problem(c) is { } problem) problems.Add(problem);
            if (!Parses(c)) problems.Add($"'{c.Prompt}' does not describe its spec {c.Spec}");
            if (c.Reward is not (0.0 or 1.0)) problems.Add($"'{c.Prompt}' seed {c.GenerationSeed}: reward {c.Reward} is neither 0 nor 1");
            if (!seen.Add((c.Prompt, c.GenerationSeed))) problems.Add($"'{c.Prompt}' seed {c.GenerationSeed} is given twice");
        }

        if (problems.Count > 0)
        {
            string first = string.Join("; ", problems.Take(5));
            throw new ArgumentException($"GORS selection refused: {problems.Count} problem(s): {first}{(problems.Count > 5 ? "; ..." : "")}", nameof(candidates));
        }

        var kept = new List<GorsKept>();
        var summaries = new List<GorsCategorySummary>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var mine = all.Where(c => c.Category == category).ToList();
            var byPrompt = mine.Where(c => c.Reward == 1)
                .GroupBy(c => c.Prompt, StringComparer.Ordinal)
                .OrderBy(g => g.Key, StringComparer.Ordinal)
                .Select(g => g.OrderBy(c => c.GenerationSeed).ToList())
                .ToList();
            var rng = SeededRandom.ForStream(options.Seed, (ulong)category);
            rng.Shuffle(byPrompt);
            foreach (var list in byPrompt) rng.Shuffle(list);

            var taken = new List<GorsCandidate>();
            for (int round = 0; round < options.MaxPerPrompt && taken.Count < options.CapPerCategory; round++)
            {
                foreach (var list in byPrompt)
                {
                    if (taken.Count == options.CapPerCategory) break;
                    if (round < list.Count) taken.Add(list[round]);
                }
            }

            kept.AddRange(taken.OrderBy(c => c.Prompt, StringComparer.Ordinal).ThenBy(c => c.GenerationSeed).Select(c => new GorsKept(c, c.Reward)));
            summaries.Add(new GorsCategorySummary(category, mine.Count, mine.Count(c => c.Reward == 1), taken.Count,
                taken.Select(c => c.Prompt).Distinct(StringComparer.Ordinal).Count()));
        }

        return new GorsSelection(options, kept, summaries);
    }

    private static bool Parses(GorsCandidate c)
    {
        try
        {
            return CaptionGrammar.Parse(c.Prompt).Equals(c.Spec);
        }
        catch (FormatException)
        {
            return false;
        }
    }
}

using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// What a GORS candidate must stay clear of: the evaluation image seeds (a fine-tune image made with an evaluation
/// seed would be the very sample it is later scored on) and the validation and test prompts; optionally, candidates
/// must be training-split prompts.
/// </summary>
/// <param name="EvaluationImageSeeds">Seeds of the evaluation images.</param>
/// <param name="HeldBackKeys">Canonical keys of the validation and test prompts.</param>
/// <param name="HeldBackTexts">Texts of the validation and test prompts.</param>
/// <param name="TrainingKeys">Canonical keys of the training split; null accepts any other prompt.</param>
public sealed record GorsGuard(
    IReadOnlySet<long> EvaluationImageSeeds, IReadOnlySet<string> HeldBackKeys, IReadOnlySet<string> HeldBackTexts, IReadOnlySet<string>? TrainingKeys)
{
    /// <summary>The evaluation image seeds of <paramref name="recipe"/>: <c>ImageSeedBase</c> up to <c>ImageSeedBase + ImageSeeds - 1</c>.</summary>
    public static IReadOnlySet<long> EvaluationSeedsOf(MainJobRecipe recipe)
    {
        ArgumentNullException.ThrowIfNull(recipe);
        return Enumerable.Range(0, recipe.ImageSeeds).Select(i => recipe.ImageSeedBase + i).ToHashSet();
    }

    /// <summary>
    /// The guard of a study on <paramref name="world"/>: candidates must be training-split prompts, not on either side
    /// of <paramref name="split"/>, and not generated with one of <paramref name="evaluationImageSeeds"/>.
    /// </summary>
    public static GorsGuard For(SyntheticWorld world, PromptSplit split, IEnumerable<long> evaluationImageSeeds)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(split);
        ArgumentNullException.ThrowIfNull(evaluationImageSeeds);
        return new GorsGuard(evaluationImageSeeds.ToHashSet(), split.HeldBackKeys, split.HeldBackTexts,
            world.TrainSpecs.Select(s => s.CanonicalKey).ToHashSet(StringComparer.Ordinal));
    }

    /// <summary><see cref="For(SyntheticWorld, PromptSplit, IEnumerable{long})"/> with the evaluation seeds of <paramref name="recipe"/>.</summary>
    public static GorsGuard For(SyntheticWorld world, PromptSplit split, MainJobRecipe recipe) => For(world, split, EvaluationSeedsOf(recipe));

    /// <summary>Why <paramref name="candidate"/> may not be used, or null when it may.</summary>
    public string? Problem(GorsCandidate candidate)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        if (EvaluationImageSeeds.Contains(candidate.GenerationSeed))
            return $"generation seed {candidate.GenerationSeed} of '{candidate.Prompt}' is an evaluation image seed";
        if (HeldBackTexts.Contains(candidate.Prompt) || HeldBackKeys.Contains(candidate.Spec.CanonicalKey))
            return $"'{candidate.Prompt}' is a validation or test prompt (scene {candidate.Spec.CanonicalKey})";
        if (TrainingKeys is not null && !TrainingKeys.Contains(candidate.Spec.CanonicalKey))
            return $"'{candidate.Prompt}' is not a training-split prompt (scene {candidate.Spec.CanonicalKey})";
        return null;
    }
}

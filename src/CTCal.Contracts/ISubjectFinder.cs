namespace CTCal.Contracts;

/// <summary>
/// Optional capability: which subjects CTCal would calibrate for a prompt (the nouns whose cross-attention maps it aligns).
/// A plugin configured with a local language model (ONNX Runtime GenAI) asks it and validates the answer against the
/// prompt; otherwise, or when the answer is invalid, the bundled lexicon and rules decide.
/// </summary>
public interface ISubjectFinder
{
    /// <summary>The subjects of <paramref name="prompt"/>, in lower case, as words of the prompt.</summary>
    Task<PromptSubjects> FindSubjectsAsync(string prompt, CancellationToken cancellationToken = default);
}

/// <summary>A prompt's subjects and where they came from.</summary>
/// <param name="Subjects">The subjects (lower-case words of the prompt; a subject may be two words, "teddy bear").</param>
/// <param name="Source"><c>model</c> (the language model's validated answer), <c>lexicon</c> (no model configured) or
/// <c>lexicon-fallback</c> (the model's answer was invalid).</param>
/// <param name="Problem">Why the model's answer was not used (null when it was, or when there is no model).</param>
public sealed record PromptSubjects(IReadOnlyList<string> Subjects, string Source, string? Problem = null);

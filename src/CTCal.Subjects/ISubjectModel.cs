namespace CTCal.Subjects;

/// <summary>Something that answers subject prompts (<see cref="SubjectPrompt"/>): the GenAI model, or a test double.</summary>
public interface ISubjectModel
{
    /// <summary>A short name for reports (the model folder).</summary>
    string Name { get; }

    /// <summary>True when answers are constrained to the caption's words by the runtime (guidance).</summary>
    bool Constrained { get; }

    /// <summary>The raw answer text for each caption, in order (the model writes the JSON list; nothing is validated here).</summary>
    IReadOnlyList<string> Answer(IReadOnlyList<string> captions);
}

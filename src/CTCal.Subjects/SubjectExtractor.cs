namespace CTCal.Subjects;

/// <summary>Where a caption's subjects came from.</summary>
public enum SubjectSource
{
    /// <summary>The model's answer, validated.</summary>
    Model,
    /// <summary>The lexicon, because the model's answer was invalid.</summary>
    LexiconFallback,
}

/// <summary>One caption's subjects.</summary>
/// <param name="Caption">The caption.</param>
/// <param name="Subjects">Its subjects (lower-case caption words).</param>
/// <param name="Source">Model or fallback.</param>
/// <param name="Problem">Why the model's answer was not used (<see cref="AnswerProblem.None"/> when it was).</param>
/// <param name="RawAnswer">The model's answer text.</param>
public sealed record SubjectResult(string Caption, IReadOnlyList<string> Subjects, SubjectSource Source, AnswerProblem Problem, string RawAnswer);

/// <summary>
/// Asks an <see cref="ISubjectModel"/> for the subjects of captions, validates every answer against its caption
/// (<see cref="SubjectAnswer.Validate"/>) and falls back to the lexicon for that caption when it fails, counting each
/// fallback by its reason.
/// </summary>
public sealed class SubjectExtractor
{
    private readonly ISubjectModel _model;
    private readonly LexiconSubjects _lexicon;
    private readonly Dictionary<AnswerProblem, int> _fallbacks = [];

    /// <summary>Wraps <paramref name="model"/> with <paramref name="lexicon"/> as the fallback.</summary>
    public SubjectExtractor(ISubjectModel model, LexiconSubjects? lexicon = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _lexicon = lexicon ?? new LexiconSubjects();
    }

    /// <summary>Captions answered by the model so far.</summary>
    public int ModelAnswers { get; private set; }

    /// <summary>Fallbacks so far, by reason.</summary>
    public IReadOnlyDictionary<AnswerProblem, int> Fallbacks => _fallbacks;

    /// <summary>All fallbacks so far.</summary>
    public int FallbackCount => _fallbacks.Values.Sum();

    /// <summary>The model in use.</summary>
    public ISubjectModel Model => _model;

    /// <summary>The subjects of each of <paramref name="captions"/> (one model call for the batch).</summary>
    public IReadOnlyList<SubjectResult> Extract(IReadOnlyList<string> captions)
    {
        ArgumentNullException.ThrowIfNull(captions);
        IReadOnlyList<string> answers;
        try
        {
            answers = _model.Answer(captions);
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            // the runtime failed on the batch: every caption falls back, and the reason is counted
            return captions.Select(c => Fallback(c, AnswerProblem.RuntimeError, e.Message)).ToArray();
        }
        if (answers.Count != captions.Count)
            throw new InvalidOperationException($"subject model '{_model.Name}' returned {answers.Count} answers for {captions.Count} captions");

        var results = new SubjectResult[captions.Count];
        for (int i = 0; i < captions.Count; i++)
        {
            var subjects = SubjectAnswer.Validate(captions[i], answers[i], _lexicon.IsLayout, out var problem);
            if (subjects is null)
            {
                results[i] = Fallback(captions[i], problem, answers[i]);
            }
            else
            {
                ModelAnswers++;
                results[i] = new SubjectResult(captions[i], subjects, SubjectSource.Model, AnswerProblem.None, answers[i]);
            }
        }
        return results;
    }

    private SubjectResult Fallback(string caption, AnswerProblem problem, string raw)
    {
        _fallbacks[problem] = _fallbacks.GetValueOrDefault(problem) + 1;
        return new SubjectResult(caption, _lexicon.Of(caption), SubjectSource.LexiconFallback, problem, raw);
    }
}

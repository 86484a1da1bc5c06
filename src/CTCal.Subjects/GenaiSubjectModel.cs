namespace CTCal.Subjects;

/// <summary>
/// Subject answers from a local ONNX Runtime GenAI model folder. With <c>constrained</c> each caption is decoded alone
/// under a regular-expression guidance built from its words (<see cref="SubjectPrompt.ConstraintRegex"/>) when the runtime
/// supports guidance; otherwise captions are decoded in batches, unconstrained, and validation does the checking.
/// </summary>
public sealed class GenaiSubjectModel : ISubjectModel, IDisposable
{
    /// <summary>New tokens allowed per answer.</summary>
    public const int MaxAnswerTokens = 24;

    private readonly GenaiTextModel _model;
    private readonly Func<string, bool> _isLayout;
    private readonly bool _wantConstrained;

    /// <summary>Loads <paramref name="folder"/>; <paramref name="isLayout"/> marks the words the constraint leaves out.</summary>
    public GenaiSubjectModel(string folder, Func<string, bool> isLayout, bool constrained = true, string? provider = null)
    {
        _model = new GenaiTextModel(folder, provider);
        _isLayout = isLayout;
        _wantConstrained = constrained;
    }

    /// <inheritdoc />
    public string Name => _model.Folder;

    /// <inheritdoc />
    public bool Constrained => _wantConstrained && !_model.GuidanceUnsupported;

    /// <inheritdoc />
    public IReadOnlyList<string> Answer(IReadOnlyList<string> captions)
    {
        ArgumentNullException.ThrowIfNull(captions);
        if (Constrained)
        {
            var answers = new List<string>(captions.Count);
            foreach (string caption in captions)
            {
                answers.Add(_model.Complete(SubjectPrompt.For(caption), MaxAnswerTokens, SubjectPrompt.ConstraintRegex(caption, _isLayout)));
            }
            if (!_model.GuidanceUnsupported) return answers;
        }
        return _model.CompleteBatch(captions.Select(SubjectPrompt.For).ToArray(), MaxAnswerTokens);
    }

    /// <inheritdoc />
    public void Dispose() => _model.Dispose();
}

using System.Composition;
using CTCal.Contracts;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Subjects;

namespace CTCal.Plugin.Subjects;

/// <summary>
/// <see cref="ISubjectFinder"/>: the subjects CTCal would calibrate for a prompt. With the plugin setting
/// <c>subjectsModel</c> (an ONNX Runtime GenAI model folder) the model is asked, loaded on first use, and its answer
/// validated against the prompt (<see cref="SubjectExtractor"/>); without it, or when the answer is invalid, the bundled
/// lexicon decides. The GenAI execution provider follows the plugin's <c>executionProviders</c> where this build's GenAI
/// package has it (CUDA in -p:CTCalGpu=Cuda builds, DirectML in -p:CTCalGpu=DirectML builds), else the CPU.
/// </summary>
[Export(typeof(ISubjectFinder))]
[ExportMetadata(PluginMetadataKeys.Id, PluginInfo.SubjectFinderId)]
[ExportMetadata(PluginMetadataKeys.Name, PluginInfo.SubjectFinderName)]
[ExportMetadata(PluginMetadataKeys.Version, PluginInfo.Version)]
internal sealed class CtcalSubjectFinder : ISubjectFinder, IDisposable
{
    private readonly LexiconSubjects _lexicon = new();
    private readonly string? _modelFolder;
    private readonly IReadOnlyList<ExecutionProviderKind> _providers;
    private readonly ILogSink _log;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private GenaiSubjectModel? _model;
    private SubjectExtractor? _extractor;

    [ImportingConstructor]
    public CtcalSubjectFinder(PluginRuntime runtime)
        : this(runtime.Settings.SubjectsModel, runtime.Settings.ExecutionProviders, runtime.Log)
    {
    }

    internal CtcalSubjectFinder(string? modelFolder, IReadOnlyList<ExecutionProviderKind> providers, ILogSink log)
    {
        _modelFolder = modelFolder;
        _providers = providers;
        _log = log;
    }

    /// <summary>The GenAI provider name for a plugin provider in this build, or null (the CPU).</summary>
    internal static string? GenaiProvider(ExecutionProviderKind kind) => kind switch
    {
#if CTCAL_GPU_CUDA
        ExecutionProviderKind.Cuda => "cuda",
#endif
#if CTCAL_GPU_DIRECTML
        ExecutionProviderKind.DirectML => "dml",
#endif
        _ => null,
    };

    /// <inheritdoc />
    public async Task<PromptSubjects> FindSubjectsAsync(string prompt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (_modelFolder is null) return new PromptSubjects(_lexicon.Of(prompt), "lexicon");
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var extractor = _extractor ??= new SubjectExtractor(Load(), _lexicon);
            var result = await Task.Run(() => extractor.Extract([prompt])[0], cancellationToken).ConfigureAwait(false);
            return result.Source == SubjectSource.Model
                ? new PromptSubjects(result.Subjects, "model")
                : new PromptSubjects(result.Subjects, "lexicon-fallback", result.Problem.ToString());
        }
        finally
        {
            _gate.Release();
        }
    }

    private GenaiSubjectModel Load()
    {
        foreach (var kind in _providers)
        {
            string? provider = GenaiProvider(kind);
            if (provider is null && kind != ExecutionProviderKind.Cpu) continue;
            try
            {
                _model = new GenaiSubjectModel(_modelFolder!, _lexicon.IsLayout, constrained: true, provider);
                _log.Log(LogSeverity.Information, $"subjects: {_modelFolder} on {provider ?? "cpu"}");
                return _model;
            }
            catch (InvalidDataException e) when (provider is not null)
            {
                _log.Log(LogSeverity.Warning, $"subjects: {provider} failed ({e.Message}); trying the next provider");
            }
        }
        _model = new GenaiSubjectModel(_modelFolder!, _lexicon.IsLayout, constrained: true);
        return _model;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _model?.Dispose();
        _gate.Dispose();
    }
}

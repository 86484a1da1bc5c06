using Microsoft.ML.OnnxRuntimeGenAI;

namespace CTCal.Subjects;

/// <summary>
/// A local ONNX Runtime GenAI model folder (<c>genai_config.json</c>, the ONNX decoder, the tokenizer files) that completes
/// prompts with greedy search. One instance is not thread-safe; the runtime's own threads do the work.
/// </summary>
public sealed class GenaiTextModel : IDisposable
{
    private readonly Model _model;
    private readonly Tokenizer _tokenizer;
    private bool _guidanceUnsupported;

    /// <summary>Loads the folder; <paramref name="provider"/> null for the CPU, else a GenAI execution provider name
    /// ("cuda", "dml") that the GPU build's package supports.</summary>
    public GenaiTextModel(string folder, string? provider = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!File.Exists(Path.Combine(folder, "genai_config.json")))
            throw new FileNotFoundException($"{folder}: not an ONNX Runtime GenAI model folder (genai_config.json is missing)", Path.Combine(folder, "genai_config.json"));
        Folder = folder;
        try
        {
            using var config = new Config(folder);
            if (provider is not null)
            {
                config.ClearProviders();
                config.AppendProvider(provider);
            }
            _model = new Model(config);
            _tokenizer = new Tokenizer(_model);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            throw new InvalidDataException($"{folder}: ONNX Runtime GenAI could not load the model ({e.Message})", e);
        }
    }

    /// <summary>The model folder.</summary>
    public string Folder { get; }

    /// <summary>True once the runtime refused a guidance (constrained output) request: later calls decode unconstrained.</summary>
    public bool GuidanceUnsupported => _guidanceUnsupported;

    /// <summary>The runtime's token ids for <paramref name="text"/>.</summary>
    public int[] Encode(string text)
    {
        using var sequences = _tokenizer.Encode(text);
        return sequences[0].ToArray();
    }

    /// <summary>The text of <paramref name="ids"/>.</summary>
    public string Decode(ReadOnlySpan<int> ids) => _tokenizer.Decode(ids);

    /// <summary>
    /// Greedy completion of <paramref name="prompt"/>: at most <paramref name="maxNewTokens"/> tokens or until the end token;
    /// returns only the new text. With <paramref name="regex"/> the output is constrained to it where the runtime supports
    /// guidance (otherwise it is ignored and <see cref="GuidanceUnsupported"/> turns true).
    /// </summary>
    public string Complete(string prompt, int maxNewTokens, string? regex = null)
    {
        int[] promptIds = Encode(prompt);
        using var generatorParams = new GeneratorParams(_model);
        generatorParams.SetSearchOption("max_length", promptIds.Length + maxNewTokens);
        generatorParams.SetSearchOption("do_sample", false);
        if (regex is not null && !_guidanceUnsupported)
        {
            try
            {
                generatorParams.SetGuidance("regex", regex, false);
            }
            catch (OnnxRuntimeGenAIException)
            {
                _guidanceUnsupported = true;
            }
        }
        using var generator = new Generator(_model, generatorParams);
        generator.AppendTokens(promptIds);
        while (!generator.IsDone())
        {
            generator.GenerateNextToken();
        }
        var sequence = generator.GetSequence(0);
        return _tokenizer.Decode(sequence[promptIds.Length..]);
    }

    /// <summary>
    /// Greedy completions of several prompts in one batch (no guidance): the runtime pads them; returns the new text of each.
    /// </summary>
    public IReadOnlyList<string> CompleteBatch(IReadOnlyList<string> prompts, int maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) return [];
        if (prompts.Count == 1) return [Complete(prompts[0], maxNewTokens)];
        using var sequences = _tokenizer.EncodeBatch(prompts.ToArray());
        int longest = 0;
        for (ulong i = 0; i < sequences.NumSequences; i++) longest = Math.Max(longest, sequences[i].Length);
        using var generatorParams = new GeneratorParams(_model);
        generatorParams.SetSearchOption("max_length", longest + maxNewTokens);
        generatorParams.SetSearchOption("do_sample", false);
        generatorParams.SetSearchOption("batch_size", prompts.Count);
        using var generator = new Generator(_model, generatorParams);
        generator.AppendTokenSequences(sequences);
        while (!generator.IsDone())
        {
            generator.GenerateNextToken();
        }
        var answers = new string[prompts.Count];
        int eos = _tokenizer.GetEosTokenIds().Length > 0 ? _tokenizer.GetEosTokenIds()[0] : -1;
        int pad = _tokenizer.GetPadTokenId();
        for (int i = 0; i < prompts.Count; i++)
        {
            var all = generator.GetSequence((ulong)i);
            var tail = all[Math.Min(longest, all.Length)..].ToArray().TakeWhile(t => t != eos && t != pad).ToArray();
            answers[i] = _tokenizer.Decode(tail);
        }
        return answers;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _tokenizer.Dispose();
        _model.Dispose();
    }
}

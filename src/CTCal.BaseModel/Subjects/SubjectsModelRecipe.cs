using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Core.Text;
using CTCal.Subjects;
using CTCal.Trainer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.BaseModel.Subjects;

/// <summary>Options of <see cref="SubjectsModelRecipe.Train"/>.</summary>
public sealed record SubjectsModelOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 1500;
    /// <summary>Captions per step.</summary>
    public int BatchSize { get; init; } = 48;
    /// <summary>Peak learning rate (AdamW, linear warmup, cosine decay).</summary>
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>Warmup steps.</summary>
    public int WarmupSteps { get; init; } = 100;
    /// <summary>Seed of initialisation and data.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Share of each batch from the synthetic world (the rest from the lexicon templates).</summary>
    public double SyntheticShare { get; init; } = 0.4;
    /// <summary>The model's width.</summary>
    public int Hidden { get; init; } = 64;
    /// <summary>Blocks.</summary>
    public int Layers { get; init; } = 2;
    /// <summary>Heads.</summary>
    public int Heads { get; init; } = 4;
    /// <summary>MLP width.</summary>
    public int FeedForward { get; init; } = 128;
    /// <summary>Longest prompt + answer in tokens.</summary>
    public int ContextLength { get; init; } = 96;
}

/// <summary>What training measured (written as <c>training.json</c>).</summary>
/// <param name="Steps">Steps run.</param>
/// <param name="Seconds">Wall time of the training loop.</param>
/// <param name="FinalLoss">Mean loss over the last 50 steps.</param>
/// <param name="VocabSize">Tokens.</param>
/// <param name="Parameters">Parameters.</param>
/// <param name="HeldOutSynthetic">Held-out synthetic captions evaluated.</param>
/// <param name="HeldOutSyntheticExact">Of those, answers whose validated subjects equal the truth (greedy, in TorchSharp).</param>
/// <param name="HeldOutTemplates">Held-out template captions (another seed) evaluated.</param>
/// <param name="HeldOutTemplatesExact">Of those, exact answers.</param>
public sealed record SubjectsModelReport(int Steps, double Seconds, double FinalLoss, int VocabSize, long Parameters,
    int HeldOutSynthetic, int HeldOutSyntheticExact, int HeldOutTemplates, int HeldOutTemplatesExact);

/// <summary>
/// Trains CTCal's tiny subject model from scratch in TorchSharp: a <see cref="TinyDecoderLm"/> that reads a caption
/// prompt (<see cref="SubjectPrompt.For"/>) and writes its subjects as a JSON list (<see cref="SubjectPrompt.Answer"/>),
/// on the synthetic world's captions and lexicon templates (<see cref="SubjectCaptionSampler"/>), loss on the answer tokens
/// only. Writes <c>decoder.safetensors</c>, <c>decoder_config.json</c>, <c>tokenizer.json</c> and <c>training.json</c>;
/// <c>ctcal-export genai</c> turns the folder into an ONNX Runtime GenAI model folder.
/// </summary>
public static class SubjectsModelRecipe
{
    /// <summary>The tokenizer of the subject model (the lexicon's words, the synthetic world's and the templates').</summary>
    public static ByteLevelBpe Tokenizer() =>
        ByteLevelBpe.Build(SubjectVocabulary.Pieces(NounLexicon.Bundled, WorldTokenizer.GrammarWords()));

    /// <summary>Trains and writes the folder; <paramref name="log"/> gets progress lines.</summary>
    public static SubjectsModelReport Train(SubjectsModelOptions options, string outFolder, Action<string> log, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        var bpe = Tokenizer();
        var config = new TinyDecoderConfig(bpe.VocabSize, options.Hidden, options.Heads, options.Layers, options.FeedForward, options.ContextLength);
        torch.manual_seed(options.Seed);
        var rng = new Random(options.Seed);
        using var model = new TinyDecoderLm(config);
        long parameters = model.parameters().Sum(p => p.numel());
        log($"subjects model: vocab {bpe.VocabSize}, {parameters} parameters");

        var (synthetic, heldOutSynthetic) = SubjectCaptionSampler.SyntheticWorld(seed: 1, trainCount: 2000);
        var sampler = new SubjectCaptionSampler(NounLexicon.Bundled, options.Seed);
        using var optimizer = new AdamW(model.parameters(), weightDecay: 0.01);
        var clock = Stopwatch.StartNew();
        var losses = new List<double>();
        for (int step = 1; step <= options.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            double lr = step <= options.WarmupSteps
                ? options.LearningRate * step / options.WarmupSteps
                : options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (step - options.WarmupSteps) / Math.Max(1, options.Steps - options.WarmupSteps)));
            var batch = Enumerable.Range(0, options.BatchSize)
                .Select(_ => rng.NextDouble() < options.SyntheticShare ? synthetic[rng.Next(synthetic.Count)] : sampler.Next()).ToArray();
            using var scope = NewDisposeScope();
            var (ids, valid, targets, weights) = Batch(bpe, batch, config.ContextLength);
            // the loss is on answer tokens only: project just those hidden states onto the vocabulary
            var rows = weights.reshape(-1).nonzero().squeeze(1);
            var hidden = model.Hidden(ids, valid).reshape(-1, config.Hidden).index_select(0, rows);
            var loss = nn.functional.cross_entropy(model.Logits(hidden), targets.reshape(-1).index_select(0, rows));
            optimizer.ZeroGrad();
            loss.backward();
            nn.utils.clip_grad_norm_(model.parameters(), 1.0);
            optimizer.Update(lr);
            losses.Add(loss.item<float>());
            if (step % 100 == 0 || step == options.Steps)
                log($"subjects model: step {step}/{options.Steps}, loss {losses.TakeLast(50).Average():F4}, {clock.Elapsed.TotalSeconds:F0} s");
        }
        double seconds = clock.Elapsed.TotalSeconds;

        model.eval();
        var heldOutSampler = new SubjectCaptionSampler(NounLexicon.Bundled, options.Seed + 1000);
        var templates = Enumerable.Range(0, 200).Select(_ => heldOutSampler.Next()).ToArray();
        int syntheticExact = heldOutSynthetic.Count(c => Exact(model, bpe, c));
        int templateExact = templates.Count(c => Exact(model, bpe, c));
        var report = new SubjectsModelReport(options.Steps, seconds, losses.TakeLast(50).Average(), bpe.VocabSize, parameters,
            heldOutSynthetic.Count, syntheticExact, templates.Length, templateExact);
        log($"subjects model: held-out synthetic {syntheticExact}/{heldOutSynthetic.Count}, held-out templates {templateExact}/{templates.Length} exact");

        Directory.CreateDirectory(outFolder);
        TensorFile.Save(Path.Combine(outFolder, "decoder.safetensors"), model.state_dict().Select(p => (p.Key, p.Value)));
        AtomicFile.WriteText(Path.Combine(outFolder, "decoder_config.json"), config.ToJson());
        AtomicFile.WriteText(Path.Combine(outFolder, "tokenizer.json"), bpe.ToTokenizerJson());
        AtomicFile.WriteText(Path.Combine(outFolder, "training.json"), JsonSerializer.Serialize(new { options, report }, new JsonSerializerOptions { WriteIndented = true }));
        return report;
    }

    private static (Tensor Ids, Tensor Valid, Tensor Targets, Tensor Weights) Batch(ByteLevelBpe bpe, IReadOnlyList<LabelledCaption> batch, int context)
    {
        var rows = new List<(int[] Seq, int PromptLength)>();
        foreach (var c in batch)
        {
            int[] prompt = bpe.Encode(SubjectPrompt.For(c.Caption));
            int[] answer = [.. bpe.Encode(SubjectPrompt.Answer(c.Subjects)), ByteLevelBpe.EndOfTextId];
            int[] seq = [.. prompt, .. answer];
            if (seq.Length > context) continue; // too long for the position table: not trained on
            rows.Add((seq, prompt.Length));
        }
        int length = rows.Max(r => r.Seq.Length) - 1;
        var ids = new long[rows.Count * length];
        var valid = new bool[rows.Count * length];
        var targets = new long[rows.Count * length];
        var weights = new float[rows.Count * length];
        for (int r = 0; r < rows.Count; r++)
        {
            var (seq, promptLength) = rows[r];
            for (int i = 0; i < seq.Length - 1; i++)
            {
                ids[r * length + i] = seq[i];
                valid[r * length + i] = true;
                targets[r * length + i] = seq[i + 1];
                weights[r * length + i] = i + 1 >= promptLength ? 1f : 0f;
            }
        }
        return (tensor(ids, [rows.Count, length]), tensor(valid, [rows.Count, length]), tensor(targets, [rows.Count, length]), tensor(weights, [rows.Count, length]));
    }

    /// <summary>Greedy answer of the TorchSharp model for <paramref name="caption"/> (no cache: the whole sequence each step).</summary>
    public static string Greedy(TinyDecoderLm model, ByteLevelBpe bpe, string caption, int maxNewTokens = 24)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(bpe);
        var seq = bpe.Encode(SubjectPrompt.For(caption)).ToList();
        int promptLength = seq.Count;
        using var noGrad = no_grad();
        for (int i = 0; i < maxNewTokens && seq.Count < model.Config.ContextLength; i++)
        {
            using var scope = NewDisposeScope();
            var ids = tensor(seq.Select(t => (long)t).ToArray(), [1, seq.Count]);
            var last = model.Hidden(ids, ones(1, seq.Count, dtype: ScalarType.Bool))[0, seq.Count - 1];
            int next = (int)model.Logits(last).argmax().item<long>();
            if (next == ByteLevelBpe.EndOfTextId) break;
            seq.Add(next);
        }
        return bpe.Decode(seq.Skip(promptLength));
    }

    private static bool Exact(TinyDecoderLm model, ByteLevelBpe bpe, LabelledCaption c)
    {
        var got = SubjectAnswer.Validate(c.Caption, Greedy(model, bpe, c.Caption), w => NounLexicon.Bundled.Layout.Contains(w), out _);
        return got is not null && got.Order(StringComparer.Ordinal).SequenceEqual(c.Subjects.Select(s => s.ToLowerInvariant()).Order(StringComparer.Ordinal));
    }
}

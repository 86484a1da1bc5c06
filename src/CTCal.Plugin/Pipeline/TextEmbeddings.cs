using CTCal.Contracts;
using CTCal.Core.Text;
using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>Prompt and negative-prompt embeddings, each [1, Length, Hidden], row-major.</summary>
internal sealed record TextEmbeddings(float[] Prompt, float[] Negative, int Length, int Hidden)
{
    /// <summary>
    /// Tokenizes both prompts and runs the text encoder. Prompts over 75 tokens are either cut (with a warning) or split
    /// into 77-token chunks whose hidden states are concatenated along the sequence axis; the shorter side is padded
    /// with empty-prompt chunks so both have the same length.
    /// </summary>
    public static TextEmbeddings Encode(
        ModelSessions model,
        string prompt,
        string negative,
        PromptOverflow overflow,
        int maxChunks,
        RunOptions run,
        List<string> warnings)
    {
        var tokenizer = model.Tokenizer;
        IReadOnlyList<ClipEncoding> positive;
        IReadOnlyList<ClipEncoding> negativeChunks;
        if (overflow == PromptOverflow.Chunk && maxChunks > 1)
        {
            positive = tokenizer.EncodeChunks(prompt);
            negativeChunks = tokenizer.EncodeChunks(negative);
            if (positive.Count > maxChunks || negativeChunks.Count > maxChunks)
            {
                warnings.Add($"Prompt needs more than {maxChunks} chunks of {ClipTokenizer.MaxPromptTokens} tokens; the rest is cut");
                positive = positive.Take(maxChunks).ToArray();
                negativeChunks = negativeChunks.Take(maxChunks).ToArray();
            }
        }
        else
        {
            positive = new[] { tokenizer.Encode(prompt) };
            negativeChunks = new[] { tokenizer.Encode(negative) };
            if (positive[0].Truncated)
            {
                warnings.Add($"Prompt truncated to {ClipTokenizer.MaxPromptTokens} tokens{(maxChunks == 1 && overflow == PromptOverflow.Chunk ? " (the UNet accepts one 77-token window only)" : "")}");
            }

            if (negativeChunks[0].Truncated)
            {
                warnings.Add($"Negative prompt truncated to {ClipTokenizer.MaxPromptTokens} tokens");
            }
        }

        int chunks = Math.Max(positive.Count, negativeChunks.Count);
        var empty = tokenizer.Encode("");
        var all = new List<int[]>(2 * chunks);
        for (int c = 0; c < chunks; c++)
        {
            all.Add((c < positive.Count ? positive[c] : empty).InputIds);
        }

        for (int c = 0; c < chunks; c++)
        {
            all.Add((c < negativeChunks.Count ? negativeChunks[c] : empty).InputIds);
        }

        var (hidden, width) = RunEncoder(model, all, run);
        int seq = ClipTokenizer.MaxLength;
        int half = chunks * seq * width;

        // hidden is [2 * chunks, 77, H]: the positive chunks then the negative ones. Concatenating consecutive chunks
        // along the sequence axis is a plain copy in row-major order: [chunks, 77, H] -> [1, chunks * 77, H].
        return new TextEmbeddings(hidden[..half], hidden[half..], chunks * seq, width);
    }

    /// <summary>Runs the text encoder on every id row; returns [rows, 77, H] and H.</summary>
    private static (float[] Hidden, int Width) RunEncoder(ModelSessions model, List<int[]> rows, RunOptions run)
    {
        var session = model.TextEncoder;
        string where = model.Model.TextEncoderPath;
        var meta = OnnxTensors.Input(session, "input_ids", where);
        string output = OnnxTensors.OutputName(session, "last_hidden_state");

        // A fixed batch dimension of 1 (some exports) means one row per call; otherwise one call for all rows.
        int perCall = meta.Dimensions.Length > 0 && meta.Dimensions[0] > 0 ? meta.Dimensions[0] : rows.Count;
        if (perCall != 1 && perCall != rows.Count)
        {
            perCall = 1;
        }

        var result = new List<float>();
        int width = 0;
        for (int start = 0; start < rows.Count; start += perCall)
        {
            var ids = rows.Skip(start).Take(perCall).SelectMany(r => r).ToArray();
            using var input = OnnxTensors.TokenIds(meta, ids, perCall, where);
            using var outputs = session.Run(run, new[] { "input_ids" }, new[] { input }, new[] { output });
            var values = OnnxTensors.ReadFloats(outputs[0], where, out var shape);
            if (shape.Length != 3 || shape[0] != perCall || shape[1] != ClipTokenizer.MaxLength)
            {
                throw new InvalidDataException($"{where}: output '{output}' has shape [{string.Join(", ", shape)}], expected [{perCall}, 77, hidden]");
            }

            width = (int)shape[2];
            result.AddRange(values);
        }

        return (result.ToArray(), width);
    }
}

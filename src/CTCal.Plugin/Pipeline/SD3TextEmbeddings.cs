using System.Globalization;
using CTCal.Core.Text;
using CTCal.Export.Graphs;
using CTCal.Plugin.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// SD3's joint text conditioning for prompt and negative prompt, as diffusers' StableDiffusion3Pipeline.encode_prompt
/// (0.29.2) builds it: each CLIP encoder's penultimate hidden state (<c>hidden_states.{N-1}</c> of N layers, no final
/// norm) and its projected pooled state (<c>text_embeds</c>); <c>prompt_embeds</c> = cat(pad(cat(L, G, features), to
/// T5's width), T5's last_hidden_state, sequence), and <c>pooled_prompt_embeds</c> = cat(pooled L, pooled G). Without
/// T5 its place holds zeros [77, joint_attention_dim], as the pipeline does. Prompt and Negative are [1, Length, Width],
/// PooledPrompt and PooledNegative [1, PooledWidth], row-major.
/// </summary>
internal sealed record SD3TextEmbeddings(float[] Prompt, float[] Negative, int Length, int Width, float[] PooledPrompt, float[] PooledNegative, int PooledWidth)
{
    /// <summary>
    /// Tokenizes both prompts for CLIP-L, CLIP-G and T5 (77, 77 and <see cref="T5Tokenizer.DefaultMaxLength"/> tokens; longer
    /// prompts are cut with a warning, as diffusers does) and runs the encoders.
    /// </summary>
    /// <param name="jointAttentionDim">The transformer's joint_attention_dim: the width of the result.</param>
    public static SD3TextEmbeddings Encode(ModelSessions model, string prompt, string negative, int jointAttentionDim, RunOptions run, List<string> warnings)
    {
        var sd3 = model.SD3 ?? throw new InvalidOperationException($"Model '{model.Model.Info.Id}' is not SD3");
        var texts = new[] { prompt, negative };
        var (clipL, pooledL, widthL) = RunClip(model.TextEncoder, model.Model.TextEncoderPath, Ids(model.Tokenizer, texts, "CLIP-L", warnings), run);
        var (clipG, pooledG, widthG) = RunClip(sd3.TextEncoder2, model.Model.TextEncoder2Path, Ids(sd3.Tokenizer2, texts, "CLIP-G", warnings), run);
        int clipLength = ClipTokenizer.MaxLength;
        if (widthL + widthG > jointAttentionDim)
        {
            throw new InvalidDataException(
                $"{model.Model.Folder}: CLIP-L width {widthL} + CLIP-G width {widthG} exceeds the transformer's joint_attention_dim {jointAttentionDim}");
        }

        float[] t5;
        int t5Length;
        if (sd3.TextEncoder3 is { } encoder3)
        {
            (t5, t5Length) = RunT5(encoder3, model.Model.TextEncoder3Path!, sd3.T5Tokenizer!, texts, jointAttentionDim, run, warnings);
        }
        else
        {
            warnings.Add($"Model '{model.Model.Info.Id}' has no text_encoder_3 (T5): its part of the prompt embedding is zeros, as diffusers' StableDiffusion3Pipeline does without T5");
            t5Length = clipLength;
            t5 = new float[2 * t5Length * jointAttentionDim];
        }

        int length = clipLength + t5Length, width = jointAttentionDim;
        var rows = new float[2][];
        var pooled = new float[2][];
        for (int r = 0; r < 2; r++)
        {
            // [77, dL] and [77, dG] -> [77, dL + dG] zero-padded to [77, D]; then [77 + S5, D] with T5's [S5, D] below it.
            var row = new float[length * width];
            for (int s = 0; s < clipLength; s++)
            {
                Array.Copy(clipL, (r * clipLength + s) * widthL, row, s * width, widthL);
                Array.Copy(clipG, (r * clipLength + s) * widthG, row, s * width + widthL, widthG);
            }

            Array.Copy(t5, r * t5Length * width, row, clipLength * width, t5Length * width);
            rows[r] = row;

            // [pL] and [pG] -> [pL + pG]
            pooled[r] = pooledL.Row(r).Concat(pooledG.Row(r)).ToArray();
        }

        return new SD3TextEmbeddings(rows[0], rows[1], length, width, pooled[0], pooled[1], pooled[0].Length);
    }

    /// <summary>Both prompts' CLIP ids, [2, 77] row-major; a prompt over 75 tokens is cut with a warning.</summary>
    private static int[] Ids(ClipTokenizer tokenizer, string[] texts, string encoder, List<string> warnings)
    {
        var ids = new List<int>(texts.Length * ClipTokenizer.MaxLength);
        for (int i = 0; i < texts.Length; i++)
        {
            var encoding = tokenizer.Encode(texts[i]);
            if (encoding.Truncated)
            {
                warnings.Add($"{(i == 0 ? "Prompt" : "Negative prompt")} truncated to {ClipTokenizer.MaxPromptTokens} tokens for {encoder}");
            }

            ids.AddRange(encoding.InputIds);
        }

        return ids.ToArray();
    }

    /// <summary>A CLIPTextModelWithProjection graph on [2, 77] ids: the penultimate hidden states [2, 77, d] and text_embeds [2, p].</summary>
    private static (float[] Hidden, Pooled Pooled, int Width) RunClip(InferenceSession session, string where, int[] ids, RunOptions run)
    {
        var layers = session.OutputMetadata.Keys
            .Where(k => k.StartsWith(TextEncoderGraph.HiddenStatesPrefix, StringComparison.Ordinal))
            .Select(k => int.TryParse(k.AsSpan(TextEncoderGraph.HiddenStatesPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int i) ? i : -1)
            .ToArray();
        if (layers.Length == 0 || layers.Max() < 1 || !session.OutputMetadata.ContainsKey(TextEncoderGraph.TextEmbeds))
        {
            throw new InvalidDataException(
                $"{where}: outputs {string.Join(", ", session.OutputMetadata.Keys)}; SD3 needs '{TextEncoderGraph.TextEmbeds}' and '{TextEncoderGraph.HiddenStatesPrefix}N' " +
                "(export CLIPTextModelWithProjection with output_hidden_states)");
        }

        // hidden_states.0 is the embeddings, hidden_states.N the last layer: diffusers' hidden_states[-2] is N - 1.
        string penultimate = TextEncoderGraph.HiddenStatesPrefix + (layers.Max() - 1).ToString(CultureInfo.InvariantCulture);
        var outputs = RunRows(session, where, ids, ClipTokenizer.MaxLength, new[] { penultimate, TextEncoderGraph.TextEmbeds }, run);
        var (hidden, hiddenShape) = outputs[0];
        var (embeds, embedsShape) = outputs[1];
        if (hiddenShape.Length != 3 || hiddenShape[1] != ClipTokenizer.MaxLength || embedsShape.Length != 2)
        {
            throw new InvalidDataException(
                $"{where}: '{penultimate}' is [{string.Join(", ", hiddenShape)}] and '{TextEncoderGraph.TextEmbeds}' [{string.Join(", ", embedsShape)}], expected [2, 77, hidden] and [2, projection]");
        }

        return (hidden, new Pooled(embeds, (int)embedsShape[1]), (int)hiddenShape[2]);
    }

    /// <summary>T5 on both prompts: last_hidden_state [2, S5, D] and S5.</summary>
    private static (float[] Hidden, int Length) RunT5(
        InferenceSession session, string where, T5Tokenizer tokenizer, string[] texts, int width, RunOptions run, List<string> warnings)
    {
        int maxLength = T5Tokenizer.DefaultMaxLength;
        var ids = new List<int>(texts.Length * maxLength);
        for (int i = 0; i < texts.Length; i++)
        {
            if (tokenizer.EncodeWithoutSpecials(texts[i]).Count > maxLength - 1)
            {
                warnings.Add($"{(i == 0 ? "Prompt" : "Negative prompt")} truncated to {maxLength - 1} tokens for T5");
            }

            ids.AddRange(tokenizer.Encode(texts[i], maxLength).Select(id => checked((int)id)));
        }

        var (hidden, shape) = RunRows(session, where, ids.ToArray(), maxLength, new[] { T5EncoderGraph.LastHiddenState }, run)[0];
        if (shape.Length != 3 || shape[1] != maxLength || shape[2] != width)
        {
            throw new InvalidDataException(
                $"{where}: '{T5EncoderGraph.LastHiddenState}' is [{string.Join(", ", shape)}], expected [2, {maxLength}, {width}] (d_model must equal the transformer's joint_attention_dim)");
        }

        return (hidden, maxLength);
    }

    /// <summary>
    /// Runs an encoder on rows of <paramref name="length"/> ids: one call for all rows, or one per row when the graph's batch
    /// dimension is fixed at 1. Returns each requested output with its batch dimension made the row count.
    /// </summary>
    private static List<(float[] Values, long[] Shape)> RunRows(InferenceSession session, string where, int[] ids, int length, string[] names, RunOptions run)
    {
        var meta = OnnxTensors.Input(session, "input_ids", where);
        int rows = ids.Length / length;
        int perCall = meta.Dimensions.Length > 0 && meta.Dimensions[0] == 1 ? 1 : rows;
        var values = names.Select(_ => new List<float>()).ToArray();
        var shapes = new long[names.Length][];
        for (int start = 0; start < rows; start += perCall)
        {
            using var input = OnnxTensors.TokenIds(meta, ids.AsSpan(start * length, perCall * length), perCall, where);
            using var outputs = session.Run(run, new[] { "input_ids" }, new[] { input }, names);
            for (int o = 0; o < names.Length; o++)
            {
                values[o].AddRange(OnnxTensors.ReadFloats(outputs[o], where, out var shape));
                shape[0] = rows;
                shapes[o] = shape;
            }
        }

        return values.Select((v, o) => (v.ToArray(), shapes[o])).ToList();
    }

    /// <summary>Pooled rows [rows, Width], row-major.</summary>
    private sealed record Pooled(float[] Values, int Width)
    {
        public IEnumerable<float> Row(int row) => Values.Skip(row * Width).Take(Width);
    }
}

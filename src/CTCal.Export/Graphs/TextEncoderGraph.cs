using CTCal.Core.Diffusers;
using CTCal.Export.Onnx;
using static CTCal.Export.Onnx.Proto.TensorProto.Types;

namespace CTCal.Export.Graphs;

/// <summary>
/// ONNX graph of a transformers CLIPTextModel: input <c>input_ids</c> int32 [batch, sequence] (sequence up to
/// max_position_embeddings); outputs <c>last_hidden_state</c> float32 [batch, sequence, hidden] and <c>pooler_output</c>
/// float32 [batch, hidden], the final-layer-normed state at the end-of-text token: argmax(input_ids) for legacy configs
/// (eos_token_id == 2), else the first position holding eos_token_id.
/// </summary>
public static class TextEncoderGraph
{
    public const string Input = "input_ids";
    public const string LastHiddenState = "last_hidden_state";
    public const string PoolerOutput = "pooler_output";

    /// <summary>transformers CLIPTextModelWithProjection's <c>text_embeds</c>: text_projection (no bias) of the pooled state.</summary>
    public const string TextEmbeds = "text_embeds";

    /// <summary>The prefix of the hidden-state outputs <c>hidden_states.0</c> (embeddings) .. <c>hidden_states.N</c> (last layer, before the final norm).</summary>
    public const string HiddenStatesPrefix = "hidden_states.";

    public static OnnxGraph Build(ClipTextConfig c, bool fp16Weights)
    {
        var g = new OnnxGraph("text_encoder", fp16Weights);
        var (last, pooled, _) = Encode(g, c, keepHiddenStates: false);
        g.Output(last, LastHiddenState, DataType.Float, "batch", "sequence", (long)c.HiddenSize);
        g.Output(pooled, PoolerOutput, DataType.Float, "batch", (long)c.HiddenSize);
        return g;
    }

    /// <summary>
    /// transformers CLIPTextModelWithProjection (SD3's <c>text_encoder</c> and <c>text_encoder_2</c>) with Optimum's output
    /// names for it (exported with output_hidden_states): <c>text_embeds</c> float32 [batch, projection_dim],
    /// <c>last_hidden_state</c> [batch, sequence, hidden] and <c>hidden_states.0</c> .. <c>hidden_states.N</c> [batch,
    /// sequence, hidden] (the embeddings, then each layer's output before the final norm). SD3 uses
    /// <c>hidden_states.{N-1}</c>, the penultimate layer's output, and <c>text_embeds</c>; ONNX Runtime computes only what
    /// is fetched.
    /// </summary>
    public static OnnxGraph BuildWithProjection(ClipTextConfig c, string name, bool fp16Weights)
    {
        var g = new OnnxGraph(name, fp16Weights);
        var (last, pooled, hidden) = Encode(g, c, keepHiddenStates: true);
        g.Scope = "text_projection";
        string embeds = g.Linear(pooled, "text_projection", c.HiddenSize, c.ProjectionDim, bias: false); // [B, projection_dim]
        g.Scope = "";
        g.Output(embeds, TextEmbeds, DataType.Float, "batch", (long)c.ProjectionDim);
        g.Output(last, LastHiddenState, DataType.Float, "batch", "sequence", (long)c.HiddenSize);
        for (int i = 0; i < hidden.Count; i++)
            g.Output(hidden[i], HiddenStatesPrefix + i, DataType.Float, "batch", "sequence", (long)c.HiddenSize);
        return g;
    }

    // CLIPTextTransformer: returns last_hidden_state [B, S, D], the pooled state [B, D] and (when asked) every hidden state [B, S, D].
    private static (string Last, string Pooled, List<string> Hidden) Encode(OnnxGraph g, ClipTextConfig c, bool keepHiddenStates)
    {
        string ids = g.Input(Input, DataType.Int32, "batch", "sequence");
        long d = c.HiddenSize;
        string batch = g.ShapeOf(ids, 0, 1); // [1]: B
        string seq = g.ShapeOf(ids, 1, 2);   // [1]: S

        // CLIPTextEmbeddings: token + position embeddings
        g.Scope = "text_model.embeddings";
        string tok = g.Op("Gather", [g.Weight("text_model.embeddings.token_embedding.weight", c.VocabSize, d), ids], null, OnnxGraph.Attr("axis", 0L)); // [B, S, D]
        string pos = g.Op("Slice", [g.Weight("text_model.embeddings.position_embedding.weight", c.MaxPositionEmbeddings, d), g.ConstInt64(0), seq, g.ConstInt64(0)]); // [S, D]
        string h = g.Reshape(g.Add(tok, pos), -1, d); // [B*S, D]
        var hidden = new List<string>();
        string BatchSeq(string tokens) => g.Reshape(tokens, g.Concat(0, batch, seq, g.ConstInt64(d))); // [B*S, D] -> [B, S, D]
        if (keepHiddenStates) hidden.Add(BatchSeq(h));

        // causal mask [S, S]: 0 on and below the diagonal, float.MinValue above (transformers uses finfo.min)
        string range = g.Op("Range", [g.ScalarInt64(0), g.Op("Squeeze", [seq, g.ConstInt64(0)]), g.ScalarInt64(1)]); // [S]
        string upper = g.Op("Greater", [g.Unsqueeze(range, 0), g.Unsqueeze(range, 1)]); // [S, S]: col > row
        string mask = g.Op("Where", [upper, g.ScalarFloat(float.MinValue), g.ScalarFloat(0f)]);

        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            // CLIPEncoderLayer (pre-LN): h += attn(ln1(h)); h += mlp(ln2(h))
            string p = $"text_model.encoder.layers.{i}";
            g.Scope = p;
            string x = g.LayerNorm(h, p + ".layer_norm1", d, c.LayerNormEps);
            string q = g.Linear(x, p + ".self_attn.q_proj", d, d);
            string k = g.Linear(x, p + ".self_attn.k_proj", d, d);
            string v = g.Linear(x, p + ".self_attn.v_proj", d, d);
            string a = g.Attention(q, k, v, batch, c.NumAttentionHeads, c.HeadDim, mask);
            h = g.Add(h, g.Linear(a, p + ".self_attn.out_proj", d, d));
            x = g.LayerNorm(h, p + ".layer_norm2", d, c.LayerNormEps);
            x = g.Linear(x, p + ".mlp.fc1", d, c.IntermediateSize);
            x = c.HiddenAct == "gelu" ? g.Gelu(x) : g.QuickGelu(x);
            h = g.Add(h, g.Linear(x, p + ".mlp.fc2", c.IntermediateSize, d));
            if (keepHiddenStates) hidden.Add(BatchSeq(h));
        }

        g.Scope = "text_model.final_layer_norm";
        h = g.LayerNorm(h, "text_model.final_layer_norm", d, c.LayerNormEps);
        string last = BatchSeq(h); // [B, S, D]

        g.Scope = "pooler";
        string key = c.LegacyArgmaxPooling ? ids : g.Op("Cast", [g.Op("Equal", [ids, g.Op("Cast", [g.ScalarInt64(c.EosTokenId)], null, OnnxGraph.Attr("to", (long)DataType.Int32))])], null, OnnxGraph.Attr("to", (long)DataType.Int32));
        string index = g.Op("ArgMax", [key], null, OnnxGraph.Attr("axis", 1L), OnnxGraph.Attr("keepdims", 1L)); // [B, 1], first maximum
        string pooled = g.Op("GatherND", [last, index], null, OnnxGraph.Attr("batch_dims", 1L)); // [B, D]
        g.Scope = "";
        return (last, pooled, hidden);
    }
}

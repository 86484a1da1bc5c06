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

    public static OnnxGraph Build(ClipTextConfig c, bool fp16Weights)
    {
        var g = new OnnxGraph("text_encoder", fp16Weights);
        string ids = g.Input(Input, DataType.Int32, "batch", "sequence");
        long d = c.HiddenSize;
        string batch = g.ShapeOf(ids, 0, 1); // [1]: B
        string seq = g.ShapeOf(ids, 1, 2);   // [1]: S

        // CLIPTextEmbeddings: token + position embeddings
        g.Scope = "text_model.embeddings";
        string tok = g.Op("Gather", [g.Weight("text_model.embeddings.token_embedding.weight", c.VocabSize, d), ids], null, OnnxGraph.Attr("axis", 0L)); // [B, S, D]
        string pos = g.Op("Slice", [g.Weight("text_model.embeddings.position_embedding.weight", c.MaxPositionEmbeddings, d), g.ConstInt64(0), seq, g.ConstInt64(0)]); // [S, D]
        string h = g.Reshape(g.Add(tok, pos), -1, d); // [B*S, D]

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
        }

        g.Scope = "text_model.final_layer_norm";
        h = g.LayerNorm(h, "text_model.final_layer_norm", d, c.LayerNormEps);
        string last = g.Reshape(h, g.Concat(0, batch, seq, g.ConstInt64(d))); // [B, S, D]

        g.Scope = "pooler";
        string key = c.LegacyArgmaxPooling ? ids : g.Op("Cast", [g.Op("Equal", [ids, g.Op("Cast", [g.ScalarInt64(c.EosTokenId)], null, OnnxGraph.Attr("to", (long)DataType.Int32))])], null, OnnxGraph.Attr("to", (long)DataType.Int32));
        string index = g.Op("ArgMax", [key], null, OnnxGraph.Attr("axis", 1L), OnnxGraph.Attr("keepdims", 1L)); // [B, 1], first maximum
        string pooled = g.Op("GatherND", [last, index], null, OnnxGraph.Attr("batch_dims", 1L)); // [B, D]
        g.Scope = "";
        g.Output(last, LastHiddenState, DataType.Float, "batch", "sequence", d);
        g.Output(pooled, PoolerOutput, DataType.Float, "batch", d);
        return g;
    }
}

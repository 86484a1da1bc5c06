using CTCal.Core.Diffusers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// transformers.models.clip.modeling_clip.CLIPTextModelWithProjection (SDXL's and SD3's text encoders).
/// <summary>
/// The CLIP text transformer of <see cref="CLIPTextModel"/> (<c>text_model.*</c>, the same layers) plus
/// <c>text_projection</c>, a linear map hidden -> projection_dim without bias applied to the pooled (end-of-text) output.
/// Returns transformers' <c>text_embeds</c>, <c>last_hidden_state</c> (after final_layer_norm) and the
/// <c>hidden_states</c> tuple (embeddings, then each layer, without final_layer_norm).
/// </summary>
public sealed class CLIPTextModelWithProjection : Module<Tensor, (Tensor TextEmbeds, Tensor LastHiddenState, Tensor[] HiddenStates)>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly CLIPTextTransformer text_model;
    private readonly Linear text_projection;
#pragma warning restore IDE1006

    public CLIPTextModelWithProjection(ClipTextConfig config) : base(nameof(CLIPTextModelWithProjection))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        text_model = new CLIPTextTransformer(config);
        text_projection = Linear(config.HiddenSize, config.ProjectionDim, hasBias: false);
        RegisterComponents();
    }

    public ClipTextConfig Config { get; }

    /// <summary>Checkpoint keys a loader may skip (the old <c>position_ids</c> buffer), as for <see cref="CLIPTextModel"/>.</summary>
    public static IReadOnlyList<string> IgnorableKeys => CLIPTextModel.IgnorableKeys;

    /// <param name="inputIds">[B, T] token ids (int64), T &lt;= max_position_embeddings.</param>
    /// <returns>
    /// TextEmbeds [B, projection_dim]; LastHiddenState [B, T, hidden]; HiddenStates: num_hidden_layers + 1 tensors
    /// [B, T, hidden] (index ^2 is the penultimate layer that SD3's pipeline uses, with no final_layer_norm).
    /// </returns>
    public override (Tensor TextEmbeds, Tensor LastHiddenState, Tensor[] HiddenStates) forward(Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        var (last, pooled, hidden) = text_model.ForwardWithHiddenStates(inputIds);
        var embeds = text_projection.forward(pooled);                          // [B, projection_dim]
        foreach (var state in hidden) state.MoveToOuterDisposeScope();
        return (embeds.MoveToOuterDisposeScope(), last.MoveToOuterDisposeScope(), hidden);
    }
}

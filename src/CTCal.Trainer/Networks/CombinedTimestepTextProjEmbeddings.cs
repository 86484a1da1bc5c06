using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.embeddings.CombinedTimestepTextProjEmbeddings (SD3's conditioning vector).
/// <summary>
/// temb = <c>timestep_embedder</c>(Timesteps(256, flip_sin_to_cos = true, downscale_freq_shift = 0)(t)) +
/// <c>text_embedder</c>(pooled text embedding).
/// </summary>
public sealed class CombinedTimestepTextProjEmbeddings : Module<Tensor, Tensor, Tensor>
{
    /// <summary>Width of the sinusoidal timestep features (diffusers hard-codes 256 for SD3).</summary>
    public const int TimestepChannels = 256;

#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly TimestepEmbedding timestep_embedder;
    // diffusers' PixArtAlphaTextProjection(act_fn="silu") is linear_1, SiLU, linear_2: the same module, names and all, as
    // TimestepEmbedding, so it is one here.
    private readonly TimestepEmbedding text_embedder;
#pragma warning restore IDE1006

    public CombinedTimestepTextProjEmbeddings(int embeddingDim, int pooledProjectionDim) : base(nameof(CombinedTimestepTextProjEmbeddings))
    {
        timestep_embedder = new TimestepEmbedding(TimestepChannels, embeddingDim);
        text_embedder = new TimestepEmbedding(pooledProjectionDim, embeddingDim);
        RegisterComponents();
    }

    /// <param name="timestep">[B] timesteps in the scheduler's units (SD3: sigma x 1000, so [0, 1000]), any float dtype.</param>
    /// <param name="pooledProjection">[B, pooled_projection_dim]</param>
    /// <returns>[B, embeddingDim]</returns>
    public override Tensor forward(Tensor timestep, Tensor pooledProjection)
    {
        using var scope = NewDisposeScope();
        var features = Timesteps.Embed(timestep, TimestepChannels, flipSinToCos: true, freqShift: 0); // [B, 256] fp32
        var tEmb = timestep_embedder.forward(features.to(pooledProjection.dtype));                   // [B, dim]
        var textEmb = text_embedder.forward(pooledProjection);                                        // [B, dim]
        return tEmb.add(textEmb).MoveToOuterDisposeScope();
    }
}

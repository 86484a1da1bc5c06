using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.embeddings.PatchEmbed with pos_embed_max_size (SD3), and get_2d_sincos_pos_embed.
/// <summary>
/// Patchify with a strided conv (<c>proj</c>), flatten to tokens, add the centre crop of a fixed 2-D sin-cos position
/// table (<c>pos_embed</c>, [1, max*max, dim]).
/// </summary>
/// <remarks>
/// diffusers registers <c>pos_embed</c> as a buffer that is persistent exactly when pos_embed_max_size is set, which SD3
/// always does, so it is a state-dict key (<c>pos_embed.pos_embed</c>) of every SD3 checkpoint and is loaded strictly like
/// the weights. The constructor fills it with the same table diffusers computes, so a model built without weights is
/// complete too.
/// </remarks>
public sealed class PatchEmbed : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly Conv2d proj;
    private readonly Tensor pos_embed;
#pragma warning restore IDE1006

    private readonly int _patch;
    private readonly int _maxSize;
    private readonly int _dim;

    /// <param name="sampleSize">Latent side of the config; the table's base size is sampleSize / patchSize.</param>
    public PatchEmbed(int sampleSize, int patchSize, int inChannels, int embedDim, int posEmbedMaxSize) : base(nameof(PatchEmbed))
    {
        _patch = patchSize;
        _maxSize = posEmbedMaxSize;
        _dim = embedDim;
        proj = Conv2d(inChannels, embedDim, kernel_size: patchSize, stride: patchSize, bias: true);
        // The buffer lives as long as the module, not in whatever dispose scope the constructor runs under.
        using (var table = SinCosTable(embedDim, posEmbedMaxSize, baseSize: sampleSize / patchSize)) // [max*max, dim]
            pos_embed = table.unsqueeze(0).DetachFromDisposeScope();                                   // [1, max*max, dim]
        RegisterComponents();
    }

    /// <param name="latent">[B, C, H, W], H and W multiples of the patch size.</param>
    /// <returns>[B, (H/p)*(W/p), dim]: tokens in row-major patch order.</returns>
    public override Tensor forward(Tensor latent)
    {
        long h = latent.shape[2] / _patch, w = latent.shape[3] / _patch;
        if (h > _maxSize || w > _maxSize)
            throw new ArgumentException($"a {latent.shape[2]}x{latent.shape[3]} latent is {h}x{w} patches, more than pos_embed_max_size {_maxSize}", nameof(latent));
        using var scope = NewDisposeScope();
        var x = proj.forward(latent);                 // [B, dim, h, w]
        x = x.flatten(2).transpose(1, 2);             // [B, h*w, dim]
        long top = (_maxSize - h) / 2, left = (_maxSize - w) / 2;
        var table = pos_embed.view(1, _maxSize, _maxSize, _dim)                                   // [1, max, max, dim]
            .narrow(1, top, h).narrow(2, left, w)                                                 // [1, h, w, dim]
            .reshape(1, h * w, _dim);                                                             // [1, h*w, dim]
        return x.add(table.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// diffusers' get_2d_sincos_pos_embed(dim, gridSize, base_size, interpolation_scale = 1): position (i, j) of a
    /// gridSize x gridSize grid (row i, column j, row-major) gets [sincos_1d(dim/2, j * base/grid), sincos_1d(dim/2, i * base/grid)],
    /// each 1-D part being [sin(p * w_k), cos(p * w_k)] with w_k = 10000^(-k / (dim/4)).
    /// </summary>
    /// <returns>[gridSize*gridSize, dim] fp32.</returns>
    public static Tensor SinCosTable(int dim, int gridSize, int baseSize)
    {
        if (dim % 4 != 0) throw new ArgumentException($"the 2-D sin-cos table needs a width divisible by 4, got {dim}", nameof(dim));
        int quarter = dim / 4;
        // Computed in double like diffusers' numpy code, then stored as fp32.
        var omega = new double[quarter];
        for (int k = 0; k < quarter; k++) omega[k] = 1.0 / Math.Pow(10000.0, k / (double)quarter);
        var table = new float[gridSize * gridSize * dim];
        for (int i = 0; i < gridSize; i++)
        {
            for (int j = 0; j < gridSize; j++)
            {
                // numpy's grid is float32: arange(grid) / (grid / base)
                double pw = (float)(j / ((float)gridSize / baseSize)), ph = (float)(i / ((float)gridSize / baseSize));
                int row = (i * gridSize + j) * dim;
                for (int k = 0; k < quarter; k++)
                {
                    table[row + k] = (float)Math.Sin(pw * omega[k]);
                    table[row + quarter + k] = (float)Math.Cos(pw * omega[k]);
                    table[row + 2 * quarter + k] = (float)Math.Sin(ph * omega[k]);
                    table[row + 3 * quarter + k] = (float)Math.Cos(ph * omega[k]);
                }
            }
        }
        return torch.tensor(table, [gridSize * gridSize, dim]);
    }
}

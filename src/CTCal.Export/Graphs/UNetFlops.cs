namespace CTCal.Export.Graphs;

/// <summary>
/// The FLOP tally <see cref="UNetGraph.Flops"/> keeps while it walks the UNet: 2 x the multiply-adds of each Conv, Gemm
/// and attention MatMul, for a batch of one. The walk tells it each block it writes; the tally tracks the level (latent
/// cells are halved per level on each axis) from the down- and upsamplers and from <see cref="AtLevel"/>.
/// </summary>
internal sealed class UNetFlops
{
    private readonly int _height;
    private readonly int _width;
    private readonly long _tokens;
    private int _level;

    public UNetFlops(int latentHeight, int latentWidth, int tokens)
    {
        if (latentHeight < 1 || latentWidth < 1 || tokens < 1)
            throw new ArgumentOutOfRangeException(nameof(latentHeight), $"latent {latentWidth}x{latentHeight} and {tokens} tokens must be positive");
        _height = latentHeight;
        _width = latentWidth;
        _tokens = tokens;
    }

    /// <summary>FLOPs counted so far.</summary>
    public double Total { get; private set; }

    /// <summary>Latent cells at the current level (diffusers' stride-2 convs and 2x upsampling: ceil halving).</summary>
    private double Cells(int level)
    {
        long h = _height, w = _width;
        for (int i = 0; i < level; i++)
        {
            h = (h + 1) / 2;
            w = (w + 1) / 2;
        }
        return (double)h * w;
    }

    /// <summary>The walk continues at <paramref name="level"/> (an up block starts at its own resolution).</summary>
    public void AtLevel(int level) => _level = level;

    /// <summary>A Gemm of one row per image (the time embedding): [1, in] x [in, out].</summary>
    public void Linear(long inFeatures, long outFeatures) => Total += 2.0 * inFeatures * outFeatures;

    /// <summary>A k x k, stride-1 Conv at the current level.</summary>
    public void Conv(long inC, long outC, long kernel) => Total += 2.0 * Cells(_level) * inC * outC * kernel * kernel;

    /// <summary>ResnetBlock2D: conv1, time_emb_proj, conv2 and the 1x1 shortcut when the widths differ.</summary>
    public void Resnet(long inC, long outC, long tembDim)
    {
        Conv(inC, outC, 3);
        Linear(tembDim, outC);
        Conv(outC, outC, 3);
        if (inC != outC) Conv(inC, outC, 1);
    }

    /// <summary>
    /// Transformer2DModel: proj_in and proj_out (1x1 conv or linear, the same count), and per BasicTransformerBlock
    /// self-attention (q, k, v, out over N = cells tokens; Q K^T and A V: 2 N^2 C), cross-attention (q, out over N; k, v
    /// over the text tokens; 2 N S C) and the GEGLU feed-forward (C -> 8C, 4C -> C).
    /// </summary>
    public void Transformer2D(long channels, int layers, long contextDim)
    {
        double n = Cells(_level), c = channels;
        Total += 2.0 * 2 * n * c * c;
        for (int i = 0; i < layers; i++)
        {
            Total += 2.0 * (4 * n * c * c + 2 * n * n * c);
            Total += 2.0 * (2 * n * c * c + 2 * _tokens * contextDim * c + 2 * n * _tokens * c);
            Total += 2.0 * (n * c * 8 * c + n * 4 * c * c);
        }
    }

    /// <summary>Downsample2D: a 3x3 stride-2 conv, counted at the output (next) level, where the walk continues.</summary>
    public void Downsample(long channels)
    {
        _level++;
        Conv(channels, channels, 3);
    }

    /// <summary>Upsample2D: nearest 2x, then a 3x3 conv at the output (previous) level, where the walk continues.</summary>
    public void Upsample(long channels)
    {
        _level--;
        Conv(channels, channels, 3);
    }
}

namespace CTCal.Export.Onnx;

/// <summary>
/// Which fused <c>com.microsoft</c> contrib operators (ONNX Runtime, docs/ContribOperators.md) a graph is written with, each
/// used only where the target execution provider has a kernel for it (docs/OperatorKernels.md: the CPUExecutionProvider,
/// CUDAExecutionProvider and DmlExecutionProvider tables' <c>com.microsoft</c> sections). <see cref="None"/> is the portable
/// graph of standard operators.
/// </summary>
public sealed record FusedOps
{
    /// <summary>Standard ONNX operators only.</summary>
    public static FusedOps None { get; } = new();

    /// <summary>
    /// Unmasked attention as <c>com.microsoft.MultiHeadAttention</c> (query, key, value as [B, S, hidden]; num_heads; the
    /// default scale 1/sqrt(head_size) is diffusers'). CPU, CUDA and DML implement it.
    /// </summary>
    public bool MultiHeadAttention { get; init; }

    /// <summary>Exact (erf) GELU as <c>com.microsoft.Gelu</c> (one input X). CPU, CUDA and DML implement it.</summary>
    public bool Gelu { get; init; }

    /// <summary>
    /// The tanh approximation of GELU (PyTorch's <c>gelu(approximate="tanh")</c>, SD3's feed-forward) as
    /// <c>com.microsoft.FastGelu</c> (one input X; ContribOperators.md: Y = 0.5 X (1 + tanh(0.797885 X + 0.035677 X^3)), the
    /// same polynomial). The CPU and CUDA providers implement it; the directml profile keeps the Tanh chain.
    /// </summary>
    public bool FastGelu { get; init; }

    /// <summary>
    /// A residual add followed by LayerNorm as <c>com.microsoft.SkipLayerNormalization</c> (input, skip, gamma, beta; output 3
    /// is the sum the next residual needs). CUDA and DML implement it. The CPU provider implements it too, but its kernel is
    /// slower than the Add and LayerNormalization it replaces (ORT 1.31.1, one thread, the bench's mid UNet: 1.84 ms per
    /// [2048, 128] node against 0.23 ms + 0.15 ms; src/CTCal.Export/README.md), so the cpu profile leaves it out.
    /// </summary>
    public bool SkipLayerNormalization { get; init; }

    /// <summary>
    /// GroupNorm (and a following SiLU, <c>activation</c> = 1) as <c>com.microsoft.GroupNorm</c> in NHWC (<c>channels_last</c>
    /// = 1, the only layout ORT's CUDA kernel runs: contrib_ops/cuda/diffusion/group_norm.cc), between Transposes.
    /// CUDA and DML implement it; the CPU provider does not.
    /// </summary>
    public bool GroupNorm { get; init; }

    /// <summary>
    /// When set, <see cref="GroupNorm"/> and <see cref="SkipGroupNorm"/> are used only for norms whose channels per group
    /// are even and at most this many; others keep the plain InstanceNormalization form. ORT's CUDA kernel refuses any other
    /// (contrib_ops/cuda/diffusion/group_norm_impl.cu, <c>LaunchGroupNormKernel</c>: channels per group must divide the
    /// block's channels, at most <c>kMaxSize</c> = 512, and be a multiple of <c>CHANNELS_PER_THREAD</c> = 2: "GroupNorm in
    /// CUDA does not support the input"). SD 1.5/2.x UNets (10 to 80 per group at 32 groups) and their VAEs (4 to 16) pass;
    /// 32 channels in 32 groups, or a 96-channel skip concatenation at 32 groups, do not. DirectML's kernel takes any count.
    /// </summary>
    public long? GroupNormMaxChannelsPerGroup { get; init; }

    /// <summary>Whether a GroupNorm of <paramref name="channels"/> in <paramref name="groups"/> groups is written fused.</summary>
    public bool GroupNormFor(long channels, long groups) =>
        GroupNorm && (GroupNormMaxChannelsPerGroup is not long max
            || (channels % groups == 0 && channels / groups % 2 == 0 && channels / groups <= max));

    /// <summary>
    /// A resnet's <c>norm2(conv1(h) + time_emb_proj(temb)[:, :, None, None])</c> as <c>com.microsoft.SkipGroupNorm</c> (X the
    /// conv output in NHWC, gamma, beta, skip the [B, C] time projection, which the kernel broadcasts over H and W; SiLU as
    /// activation 1), so the broadcast Add is not a pass of its own. Only where <see cref="GroupNorm"/> holds. CUDA implements
    /// it (contrib_ops/cuda/diffusion/group_norm.cc, skip shapes (N, H, W, C), (N, 1, 1, C) or (N, C)); DirectML and the CPU
    /// provider do not.
    /// </summary>
    public bool SkipGroupNorm { get; init; }

    /// <summary>
    /// GEGLU's bias, split and hidden * gelu(gate) as <c>com.microsoft.BiasSplitGelu</c> (X [N, S, 2D], bias [2D] -> [N, S, D]).
    /// CUDA and DML implement it; the CPU provider does not. See <see cref="BiasSplitGeluWidths"/>.
    /// </summary>
    public bool BiasSplitGelu { get; init; }

    /// <summary>
    /// When not null, the only input widths (2D) BiasSplitGelu is used for; other widths keep the Split + Gelu form. ORT's
    /// CUDA kernel refuses any width but 2560, 5120 and 10240 (contrib_ops/cuda/diffusion/bias_split_gelu.cc: "hidden size
    /// should be 2560, 5120 or 10240"), which are SD's GEGLU widths at 320, 640 and 1280 channels. DirectML's takes any even
    /// width (core/providers/dml/.../DmlOperatorBiasSplitGelu.cpp), so its profile has no list.
    /// </summary>
    public IReadOnlyList<long>? BiasSplitGeluWidths { get; init; }

    /// <summary>
    /// GEGLU's projection as two Gemms, one per half of <c>net.0.proj</c> (hidden rows [0, inner), gate rows [inner, 2 inner),
    /// each a <c>Slice</c> of the one initializer, which ONNX Runtime folds into a constant when the session loads), instead of
    /// one Gemm whose [N, 2 inner] output a <c>Split</c> copies into two. Standard operators only; the cpu profile uses it
    /// because the Split is a full copy of the widest activation in the block (1.4 to 1.8 ms of the mid UNet's 2048 x 1024
    /// per block on one thread) while the two half-width Gemms cost what the one did. Where <see cref="SplitGeluFor"/>
    /// holds, BiasSplitGelu is used instead.
    /// </summary>
    public bool GegluHalves { get; init; }

    /// <summary>The fusions of <paramref name="profile"/>.</summary>
    public static FusedOps For(ExportOptimization profile)
    {
        var gpu = new FusedOps { MultiHeadAttention = true, Gelu = true, SkipLayerNormalization = true, GroupNorm = true, BiasSplitGelu = true };
        return profile switch
        {
            ExportOptimization.Plain => None,
            ExportOptimization.Cpu => new FusedOps { MultiHeadAttention = true, Gelu = true, FastGelu = true, GegluHalves = true },
            ExportOptimization.Cuda => gpu with { FastGelu = true, SkipGroupNorm = true, GroupNormMaxChannelsPerGroup = 512, BiasSplitGeluWidths = [2560, 5120, 10240] },
            ExportOptimization.DirectML => gpu,
            _ => throw new ArgumentOutOfRangeException(nameof(profile), profile, $"optimize value {(int)profile} is not one of plain, cpu, cuda, directml"),
        };
    }

    /// <summary>Whether GEGLU of input width <paramref name="width"/> (2 x inner) is written as BiasSplitGelu.</summary>
    public bool SplitGeluFor(long width) => BiasSplitGelu && (BiasSplitGeluWidths is null || BiasSplitGeluWidths.Contains(width));
}

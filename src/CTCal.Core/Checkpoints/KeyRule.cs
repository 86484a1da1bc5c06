namespace CTCal.Core.Checkpoints;

/// <summary>How a tensor changes between its original (LDM/CompVis, OpenCLIP) key and its diffusers name.</summary>
public enum KeyTransform
{
    /// <summary>Same data and shape, another name.</summary>
    Rename,

    /// <summary>A 1x1 conv weight [C, C, 1, 1] in the original is a linear weight [C, C] in diffusers (same bytes); other tensors are renamed.</summary>
    ConvToLinear,

    /// <summary>One of three equal parts along the first axis of a fused original tensor (OpenCLIP's q/k/v in-projection).</summary>
    FusedPart,
}

/// <summary>
/// One row of <see cref="CheckpointKeyMap"/>: the module (or tensor) <paramref name="DiffusersPrefix"/> of
/// <paramref name="Component"/> is <paramref name="OriginalPrefix"/> in an original single-file checkpoint. A key matches
/// a prefix when it equals it or continues it after a dot; the rest of the key is kept.
/// </summary>
/// <param name="Component">unet, vae or text_encoder.</param>
/// <param name="DiffusersPrefix">The diffusers module path or tensor name (inside the component).</param>
/// <param name="OriginalPrefix">The original module path or tensor key (full key in the checkpoint).</param>
/// <param name="Transform">What happens to the data.</param>
/// <param name="Part">For <see cref="KeyTransform.FusedPart"/>: which third (0 = q, 1 = k, 2 = v).</param>
public sealed record KeyRule(string Component, string DiffusersPrefix, string OriginalPrefix, KeyTransform Transform = KeyTransform.Rename, int Part = 0)
{
    /// <summary>The number of parts a fused original tensor holds.</summary>
    public const int FusedParts = 3;
}

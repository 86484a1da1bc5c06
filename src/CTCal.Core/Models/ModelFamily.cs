using CTCal.Core.Diffusers;

namespace CTCal.Core.Models;

/// <summary>
/// The Stable Diffusion family a model belongs to, decided from its architecture, never from its width: SD 2.x pairs an
/// OpenCLIP text encoder (<c>hidden_act: gelu</c>) with linear projections in the UNet's transformers
/// (<c>use_linear_projection: true</c>); SD 1.x has CLIP ViT-L (<c>quick_gelu</c>) and 1x1-conv projections.
/// </summary>
public static class ModelFamily
{
    public const string Sd1 = "sd1";
    public const string Sd2 = "sd2";

    /// <summary>Stable Diffusion 3 (an SD3Transformer2DModel with CLIP-L, CLIP-G, optional T5 and a 16-channel VAE): told by its
    /// <c>model_index.json</c> (<c>StableDiffusion3Pipeline</c>) or its <c>transformer/</c>, never by <see cref="Detect"/>.</summary>
    public const string Sd3 = "sd3";

    /// <summary>The families a manifest may name: <see cref="Detect"/>'s answers and <see cref="Sd3"/>.</summary>
    public static IReadOnlyList<string> Known { get; } = [Sd1, Sd2, Sd3];

    /// <summary>
    /// <see cref="Sd2"/> when the text encoder uses gelu or the UNet uses linear projections, else <see cref="Sd1"/>.
    /// Either config may be missing (an ONNX folder made by another tool may lack one); with both missing the answer is null.
    /// </summary>
    public static string? Detect(UNetConfig? unet, ClipTextConfig? textEncoder)
    {
        if (unet is null && textEncoder is null) return null;
        bool sd2 = unet?.UseLinearProjection == true || string.Equals(textEncoder?.HiddenAct, "gelu", StringComparison.Ordinal);
        return sd2 ? Sd2 : Sd1;
    }
}

using CTCal.Core.Models;

namespace CTCal.Trainer.Training;

/// <summary>LoRA settings (the GORS/CTCal recipe: rank 4 on the denoiser's attention; optionally the text encoder's self-attention).</summary>
public sealed record LoraOptions
{
    public int Rank { get; init; } = CTCal.Contracts.FineTuneJob.Defaults.LoraRank;

    /// <summary>LoRA alpha; the update is scaled by alpha / rank. Default: equal to the rank (scale 1).</summary>
    public double? Alpha { get; init; }

    /// <summary>Dropout probability on the adapter's input features (see <see cref="LoraLayer"/>). Default 0.</summary>
    public double Dropout { get; init; }

    /// <summary>Also adapt the text encoder's self-attention projections.</summary>
    public bool TextEncoder { get; init; }

    /// <summary>Key spelling of the written LoRA file (<see cref="LoraFile.Save"/>): peft (default) or kohya.</summary>
    public LoraSpelling Format { get; init; } = LoraSpelling.Peft;

    public double EffectiveAlpha => Alpha ?? Rank;

    public double Scale => EffectiveAlpha / Rank;

    /// <summary>UNet attention projections (diffusers names).</summary>
    public static readonly string[] UNetTargets = ["to_q", "to_k", "to_v", "to_out.0"];

    /// <summary>
    /// SD3 transformer joint-attention projections of both streams (diffusers names, as diffusers' SD3 LoRAs target them):
    /// the image stream's to_q/to_k/to_v/to_out.0 and the text stream's add_q_proj/add_k_proj/add_v_proj/to_add_out.
    /// </summary>
    public static readonly string[] TransformerTargets = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"];

    /// <summary>CLIP text encoder self-attention projections (transformers names).</summary>
    public static readonly string[] TextEncoderTargets = ["q_proj", "k_proj", "v_proj", "out_proj"];
}

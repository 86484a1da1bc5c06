using CTCal.Core.Text;
using CTCal.Trainer.Calibration;

namespace CTCal.Trainer.Training;

/// <summary>Turns CTCal.Core's CLIP tokenizer output into the trainer's <see cref="PromptTokens"/>.</summary>
public static class ClipPromptTokens
{
    public static PromptTokens From(ClipEncoding encoding) =>
        new(encoding.InputIds.Select(i => (long)i).ToArray(), encoding.Words.Select(w => new PromptWord(w.Text, w.TokenPositions)).ToList());
}

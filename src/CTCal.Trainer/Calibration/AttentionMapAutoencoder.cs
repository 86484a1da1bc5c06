using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CTCal.Trainer.Calibration;

/// <summary>
/// The "semantic-level" attention-map autoencoder of CTCal (f_enc / f_dec): a small convolutional autoencoder over
/// single-channel noun maps [N, 1, R, R]. The encoder halves the resolution twice (two stride-2 3x3 convolutions) and
/// projects to <c>codeChannels</c> channels; the decoder mirrors it with two stride-2 4x4 transposed convolutions.
/// The paper does not publish its design; this one is the project's choice. It is trained jointly with the LoRA through the
/// reconstruction term and is saved beside the LoRA weights in checkpoints.
/// </summary>
public sealed class AttentionMapAutoencoder : nn.Module<Tensor, Tensor>
{
    private readonly Sequential encoder;
    private readonly Sequential decoder;

    public AttentionMapAutoencoder(int hiddenChannels = 16, int codeChannels = 8) : base(nameof(AttentionMapAutoencoder))
    {
        if (hiddenChannels <= 0 || codeChannels <= 0) throw new ArgumentOutOfRangeException(nameof(hiddenChannels), "channel counts must be positive");
        encoder = nn.Sequential(
            nn.Conv2d(1, hiddenChannels, 3, stride: 2, padding: 1),
            nn.SiLU(),
            nn.Conv2d(hiddenChannels, 2 * hiddenChannels, 3, stride: 2, padding: 1),
            nn.SiLU(),
            nn.Conv2d(2 * hiddenChannels, codeChannels, 3, padding: 1));
        decoder = nn.Sequential(
            nn.Conv2d(codeChannels, 2 * hiddenChannels, 3, padding: 1),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * hiddenChannels, hiddenChannels, 4, stride: 2, padding: 1),
            nn.SiLU(),
            nn.ConvTranspose2d(hiddenChannels, 1, 4, stride: 2, padding: 1));
        RegisterComponents();
    }

    /// <summary>f_enc: [N, 1, R, R] -> [N, code, ceil(R/4), ceil(R/4)].</summary>
    public Tensor Encode(Tensor maps) => encoder.forward(maps);

    /// <summary>f_dec: codes -> [N, 1, R, R] (resized back to <paramref name="side"/> when R is not a multiple of 4).</summary>
    public Tensor Decode(Tensor codes, int side)
    {
        var x = decoder.forward(codes);
        if (x.shape[^1] != side || x.shape[^2] != side)
            x = nn.functional.interpolate(x, new long[] { side, side }, mode: InterpolationMode.Bilinear, align_corners: false);
        return x;
    }

    /// <summary>Reconstruction f_dec(f_enc(x)).</summary>
    public override Tensor forward(Tensor maps) => Decode(Encode(maps), (int)maps.shape[^1]);
}

using CTCal.Core.Text;
using CTCal.Plugin.Models;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Onnx;

/// <summary>
/// The parts an SD3 model has beyond the SD 1.x/2.x ones in <see cref="ModelSessions"/> (which keeps CLIP-L, its
/// tokenizer and the VAE): CLIP-G (<c>text_encoder_2</c>) with <c>tokenizer_2</c>, the optional T5
/// (<c>text_encoder_3</c>) with <c>tokenizer_3/spiece.model</c>, and the MMDiT <c>transformer</c>. Owned by the model's
/// <see cref="ModelSessions"/>.
/// </summary>
internal sealed class SD3Sessions : IDisposable
{
    public SD3Sessions(OnnxModelFolder model, SessionOptions options)
    {
        try
        {
            Tokenizer2 = ClipTokenizer.FromFolder(model.Tokenizer2Folder);
            if (model.TextEncoder3Path is { } t5)
            {
                string spiece = Path.Combine(model.Tokenizer3Folder, T5Tokenizer.ModelFileName);
                if (!File.Exists(spiece))
                {
                    throw new InvalidDataException($"{model.Folder}: has text_encoder_3/model.onnx (T5) but no tokenizer_3/{T5Tokenizer.ModelFileName}");
                }

                T5Tokenizer = T5Tokenizer.FromFile(spiece);
                TextEncoder3 = new InferenceSession(t5, options);
            }

            TextEncoder2 = new InferenceSession(model.TextEncoder2Path, options);
            Transformer = new InferenceSession(model.TransformerPath, options);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public ClipTokenizer Tokenizer2 { get; } = null!;

    public InferenceSession TextEncoder2 { get; } = null!;

    /// <summary>T5's tokenizer, or null when the folder has no text_encoder_3.</summary>
    public T5Tokenizer? T5Tokenizer { get; }

    /// <summary>The T5 encoder, or null when the folder has none.</summary>
    public InferenceSession? TextEncoder3 { get; }

    public InferenceSession Transformer { get; } = null!;

    public void Dispose()
    {
        TextEncoder2?.Dispose();
        TextEncoder3?.Dispose();
        Transformer?.Dispose();
    }
}

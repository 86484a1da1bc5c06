using System.Globalization;
using System.Text.RegularExpressions;
using CTCal.Core.Models;
using CTCal.Export.Onnx;

namespace CTCal.Plugin.Models;

/// <summary>What a text encoder graph says about its architecture: width, depth and MLP activation (each null when unreadable).</summary>
internal sealed record TextEncoderShape(int? Hidden, int? Layers, string? Activation)
{
    /// <summary>"768 wide, 12 layers, quick_gelu" with "?" for what could not be read.</summary>
    public override string ToString() =>
        $"{Hidden?.ToString(CultureInfo.InvariantCulture) ?? "?"} wide, {Layers?.ToString(CultureInfo.InvariantCulture) ?? "?"} layers, {Activation ?? "activation ?"}";
}

/// <summary>What a UNet graph says: latent channels, cross-attention width and a fixed latent size (each null when symbolic).</summary>
internal sealed record UnetShape(int? LatentChannels, int? CrossAttentionDim, int? LatentHeight, int? LatentWidth);

/// <summary>
/// Reads the architecture of an ONNX folder's parts from their graphs (<see cref="OnnxModelSummary"/>: declared inputs,
/// outputs, initializer and node names, operator types; no weights are loaded), for folders made by other tools that
/// carry no configs (OnnxStack's converter writes only the four <c>model.onnx</c> parts and <c>tokenizer/</c>).
/// </summary>
internal static partial class GraphInference
{
    /// <summary>The text encoder's width (the last_hidden_state output's last dim, else the token embedding's), depth (the
    /// distinct <c>layers.N</c> indices in initializer and node names, which both this exporter and torch.onnx keep) and
    /// activation (an Erf, Gelu, FastGelu or BiasGelu node: gelu; else a QuickGelu or Sigmoid node: quick_gelu, x·σ(1.702x)).</summary>
    public static TextEncoderShape ReadTextEncoder(string path)
    {
        var g = OnnxModelSummary.Read(path);
        int? hidden = (int?)g.Output("last_hidden_state")?.Fixed(2);
        if (hidden is null && g.Initializers.TryGetValue("text_model.embeddings.token_embedding.weight", out var embedding) && embedding.Length == 2)
            hidden = (int)embedding[1];

        var layers = new HashSet<int>();
        foreach (string name in g.Initializers.Keys.Concat(g.NodeNames))
        {
            foreach (Match m in LayerIndex().Matches(name)) layers.Add(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        }

        string? activation = null;
        if (new[] { "Erf", "Gelu", "FastGelu", "BiasGelu" }.Any(g.OpTypes.ContainsKey)) activation = "gelu";
        else if (g.OpTypes.ContainsKey("QuickGelu") || g.OpTypes.ContainsKey("Sigmoid")) activation = "quick_gelu";
        return new TextEncoderShape(hidden, layers.Count == 0 ? null : layers.Max() + 1, activation);
    }

    /// <summary>The UNet's <c>sample</c> channels and fixed height/width, and the last dim of <c>encoder_hidden_states</c>.</summary>
    public static UnetShape ReadUnet(string path)
    {
        var g = OnnxModelSummary.Read(path);
        var sample = g.Input("sample");
        var context = g.Input("encoder_hidden_states");
        return new UnetShape((int?)sample?.Fixed(1), (int?)context?.Fixed(2), (int?)sample?.Fixed(2), (int?)sample?.Fixed(3));
    }

    /// <summary>
    /// Pixels per latent cell of a VAE decoder: 2 to the number of its upsampling (<c>Resize</c>) nodes, which both this
    /// exporter and torch.onnx emit once per Upsample2D (3 for every SD 1.x/2.x VAE, so 8). Null when the graph has none
    /// or more than 5 (not a diffusers AutoencoderKL decoder as exported by either).
    /// </summary>
    public static int? ReadVaeScaleFactor(string path)
    {
        var g = OnnxModelSummary.Read(path);
        int resizes = g.OpTypes.GetValueOrDefault("Resize") + g.OpTypes.GetValueOrDefault("Upsample");
        return resizes is > 0 and <= 5 ? 1 << resizes : null;
    }

    /// <summary>
    /// The family of a text encoder, decided by its architecture and never by its width alone: CLIP ViT-L/14 (768 wide and
    /// 12 layers) is SD1 and OpenCLIP ViT-H in the transformers layout (1024 wide and 23 layers) is SD2; any other shape
    /// is decided by the activation, the rule <see cref="ModelFamily"/> applies to configs (gelu = SD2's OpenCLIP,
    /// quick_gelu = SD1's CLIP). Null when neither says (the folder then needs a config or a manifest).
    /// </summary>
    /// <returns>The family and the reason, in words, for the log line.</returns>
    public static (string Family, string Reason)? Family(TextEncoderShape t)
    {
        if (t.Hidden == 768 && t.Layers == 12 && t.Activation != "gelu") return (ModelFamily.Sd1, $"text encoder {t}: CLIP ViT-L/14");
        if (t.Hidden == 1024 && t.Layers == 23 && t.Activation != "quick_gelu") return (ModelFamily.Sd2, $"text encoder {t}: OpenCLIP ViT-H");
        return t.Activation switch
        {
            "gelu" => (ModelFamily.Sd2, $"text encoder {t}: gelu is OpenCLIP's (SD2)"),
            "quick_gelu" => (ModelFamily.Sd1, $"text encoder {t}: quick_gelu is CLIP's (SD1)"),
            _ => null,
        };
    }

    [GeneratedRegex(@"(?:^|[./_])layers[._](\d+)(?=[./_]|$)", RegexOptions.CultureInvariant)]
    private static partial Regex LayerIndex();
}

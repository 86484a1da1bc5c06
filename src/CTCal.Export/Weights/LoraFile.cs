using CTCal.Core.Models;
using CTCal.Core.Safetensors;

namespace CTCal.Export.Weights;

/// <summary>
/// Reads a LoRA safetensors file (through Core's <see cref="LoraFileLayout"/>, the one reader of the format) and groups its
/// updates by component: the updated weight is <c>{module}.weight</c> of that component, W' = W + scale * alpha / rank * B @ A.
/// </summary>
public static class LoraFile
{
    public const string UNet = LoraKeys.UNet;
    public const string TextEncoder = LoraKeys.TextEncoder;
    public const string Transformer = LoraKeys.Transformer;
    public const string TextEncoder2 = LoraKeys.TextEncoder2;

    /// <summary>
    /// Component name -> (weight name -> updates). Throws <see cref="ExportValidationException"/> naming bad keys.
    /// <paramref name="weightNames"/> gives a component's weight names, needed to map kohya keys (dots lost) back to modules.
    /// </summary>
    public static Dictionary<string, Dictionary<string, List<LoraDelta>>> Load(string path, float scale, Func<string, IEnumerable<string>>? weightNames = null)
    {
        var result = new Dictionary<string, Dictionary<string, List<LoraDelta>>>(StringComparer.Ordinal);
        using var file = OpenOrThrow(path);
        var layout = LoraFileLayout.Read(file, path, weightNames);
        if (layout.Problems.Count > 0) throw new ExportValidationException(layout.Problems);
        foreach (var m in layout.Modules)
        {
            float factor = (float)(scale * m.EffectiveAlpha(layout.MetadataAlpha) / m.Rank);
            var delta = new LoraDelta(path, m.Module, file.ReadAsFloat32(m.DownKey), file.ReadAsFloat32(m.UpKey), m.Rank, m.OutFeatures, m.InFeatures, factor);
            if (!result.TryGetValue(m.Component, out var byWeight)) result[m.Component] = byWeight = new(StringComparer.Ordinal);
            string weight = m.Module + ".weight";
            if (!byWeight.TryGetValue(weight, out var list)) byWeight[weight] = list = [];
            list.Add(delta);
        }
        return result;
    }

    private static SafetensorsFile OpenOrThrow(string path)
    {
        if (!File.Exists(path)) throw new ExportValidationException([$"LoRA file '{path}' does not exist"]);
        try
        {
            return SafetensorsFile.Open(path);
        }
        catch (Exception e) when (e is SafetensorsException or IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            throw new ExportValidationException([$"LoRA file '{path}' cannot be read: {e.Message}"]);
        }
    }
}

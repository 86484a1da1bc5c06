using CTCal.Core.Safetensors;

namespace CTCal.Export.Weights;

/// <summary>
/// Reads a LoRA safetensors file in diffusers/peft naming and groups its updates by component. Accepted key forms
/// (with an optional <c>unet.</c> or <c>text_encoder.</c> prefix; no prefix means the UNet):
/// <c>{module}.lora_A.weight</c> / <c>{module}.lora_B.weight</c> (peft) and <c>{module}.lora.down.weight</c> /
/// <c>{module}.lora.up.weight</c> (older diffusers), each with an optional scalar <c>{module}.alpha</c>. The updated weight is
/// <c>{module}.weight</c> of that component. Without a per-module alpha tensor, alpha comes from the file's metadata
/// (<c>ctcal.lora_alpha</c>, else <c>lora_alpha</c> in the peft config JSON <c>lora_adapter_metadata</c>), else alpha = rank.
/// </summary>
public static class LoraFile
{
    public const string UNet = "unet";
    public const string TextEncoder = "text_encoder";

    /// <summary>Component name -> (weight name -> updates). Throws <see cref="ExportValidationException"/> naming bad keys.</summary>
    public static Dictionary<string, Dictionary<string, List<LoraDelta>>> Load(string path, float scale)
    {
        var result = new Dictionary<string, Dictionary<string, List<LoraDelta>>>(StringComparer.Ordinal);
        var problems = new List<string>();
        using var file = OpenOrThrow(path);
        float? fileAlpha = MetadataAlpha(file, path, problems);
        var modules = new Dictionary<string, (string? Down, string? Up, string? Alpha)>(StringComparer.Ordinal);
        foreach (var t in file.Tensors)
        {
            string key = t.Name;
            (string module, int kind) = key switch
            {
                _ when key.EndsWith(".lora_A.weight", StringComparison.Ordinal) => (key[..^".lora_A.weight".Length], 0),
                _ when key.EndsWith(".lora_B.weight", StringComparison.Ordinal) => (key[..^".lora_B.weight".Length], 1),
                _ when key.EndsWith(".lora.down.weight", StringComparison.Ordinal) => (key[..^".lora.down.weight".Length], 0),
                _ when key.EndsWith(".lora.up.weight", StringComparison.Ordinal) => (key[..^".lora.up.weight".Length], 1),
                _ when key.EndsWith(".alpha", StringComparison.Ordinal) => (key[..^".alpha".Length], 2),
                _ => ("", -1),
            };
            if (kind < 0)
            {
                problems.Add($"{path}: tensor '{key}' is not a LoRA key (expected *.lora_A.weight, *.lora_B.weight, *.lora.down.weight, *.lora.up.weight or *.alpha)");
                continue;
            }
            modules.TryGetValue(module, out var entry);
            modules[module] = kind switch { 0 => entry with { Down = key }, 1 => entry with { Up = key }, _ => entry with { Alpha = key } };
        }

        foreach (var (module, (down, up, alpha)) in modules)
        {
            if (down is null || up is null)
            {
                problems.Add($"{path}: module '{module}' has {(down is null ? "no down/lora_A" : "no up/lora_B")} tensor");
                continue;
            }
            var a = file.GetInfo(down);
            var b = file.GetInfo(up);
            if (a.Shape.Length < 2 || b.Shape.Length < 2 || b.Shape[1] != a.Shape[0] || b.Shape.Skip(2).Any(d => d != 1))
            {
                problems.Add($"{path}: module '{module}': lora down [{string.Join(",", a.Shape)}] and up [{string.Join(",", b.Shape)}] do not form a rank-r product");
                continue;
            }
            int rank = (int)a.Shape[0];
            float alphaValue = fileAlpha ?? rank;
            if (alpha is not null)
            {
                float[] al = file.ReadAsFloat32(alpha);
                if (al.Length != 1) { problems.Add($"{path}: '{alpha}' must be a scalar"); continue; }
                alphaValue = al[0];
            }
            (string component, string inner) = module.StartsWith("unet.", StringComparison.Ordinal) ? (UNet, module["unet.".Length..])
                : module.StartsWith("text_encoder.", StringComparison.Ordinal) ? (TextEncoder, module["text_encoder.".Length..])
                : (UNet, module);
            long inFeatures = a.ElementCount / rank;
            var delta = new LoraDelta(path, inner, file.ReadAsFloat32(down), file.ReadAsFloat32(up), rank, b.Shape[0], inFeatures, scale * alphaValue / rank);
            if (!result.TryGetValue(component, out var byWeight)) result[component] = byWeight = new(StringComparer.Ordinal);
            string weight = inner + ".weight";
            if (!byWeight.TryGetValue(weight, out var list)) byWeight[weight] = list = [];
            list.Add(delta);
        }
        if (problems.Count > 0) throw new ExportValidationException(problems);
        return result;
    }

    private static float? MetadataAlpha(SafetensorsFile file, string path, List<string> problems)
    {
        if (file.Metadata.TryGetValue("ctcal.lora_alpha", out string? text))
        {
            if (float.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out float a) && float.IsFinite(a))
                return a;
            problems.Add($"{path}: metadata 'ctcal.lora_alpha' = '{text}' is not a number");
            return null;
        }
        if (file.Metadata.TryGetValue("lora_adapter_metadata", out string? json))
        {
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(json);
                if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                    && doc.RootElement.TryGetProperty("lora_alpha", out var la) && la.TryGetSingle(out float a))
                    return a;
            }
            catch (System.Text.Json.JsonException e)
            {
                problems.Add($"{path}: metadata 'lora_adapter_metadata' is not valid JSON ({e.Message})");
            }
        }
        return null;
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

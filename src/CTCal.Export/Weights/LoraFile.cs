using CTCal.Core.Models;
using CTCal.Core.Safetensors;

namespace CTCal.Export.Weights;

/// <summary>
/// Reads a LoRA safetensors file and groups its updates by component. Keys follow the grammar of
/// <see cref="LoraKeys"/>: peft <c>{module}.lora_A.weight</c> / <c>{module}.lora_B.weight</c> and older diffusers
/// <c>{module}.lora.down.weight</c> / <c>{module}.lora.up.weight</c> (optional <c>unet.</c> or <c>text_encoder.</c> prefix;
/// none means the UNet), and kohya <c>lora_unet_*</c> / <c>lora_te_*</c> with <c>.lora_down.weight</c> / <c>.lora_up.weight</c>
/// (module names mapped back through the component's weight names), each with an optional scalar alpha tensor. The updated weight is
/// <c>{module}.weight</c> of that component. Without a per-module alpha tensor, alpha comes from the file's metadata
/// (<c>ctcal.lora_alpha</c>, else <c>lora_alpha</c> in the peft config JSON <c>lora_adapter_metadata</c>), else alpha = rank.
/// </summary>
public static class LoraFile
{
    public const string UNet = LoraKeys.UNet;
    public const string TextEncoder = LoraKeys.TextEncoder;

    /// <summary>
    /// Component name -> (weight name -> updates). Throws <see cref="ExportValidationException"/> naming bad keys.
    /// <paramref name="weightNames"/> gives a component's weight names, needed to map kohya keys (dots lost) back to modules.
    /// </summary>
    public static Dictionary<string, Dictionary<string, List<LoraDelta>>> Load(string path, float scale, Func<string, IEnumerable<string>>? weightNames = null)
    {
        var result = new Dictionary<string, Dictionary<string, List<LoraDelta>>>(StringComparer.Ordinal);
        var problems = new List<string>();
        using var file = OpenOrThrow(path);
        float? fileAlpha = MetadataAlpha(file, path, problems);
        // grouped by (component, module as spelled); kohya modules are mapped back below
        var modules = new Dictionary<(string Component, string Module), (LoraKey? Down, LoraKey? Up, LoraKey? Alpha)>();
        foreach (var t in file.Tensors)
        {
            if (!LoraKeys.TryParse(t.Name, out var key))
            {
                problems.Add($"{path}: {LoraKeysMessage(t.Name)}");
                continue;
            }
            modules.TryGetValue((key.Component, key.Module), out var entry);
            modules[(key.Component, key.Module)] = key.Part switch
            {
                LoraPart.Down => entry with { Down = key }, LoraPart.Up => entry with { Up = key }, _ => entry with { Alpha = key },
            };
        }

        var resolvers = new Dictionary<string, LoraModuleResolver>(StringComparer.Ordinal);
        foreach (var ((component, module), (down, up, alpha)) in modules)
        {
            if (down is null || up is null)
            {
                problems.Add($"{path}: module '{module}' has {(down is null ? "no down/lora_A" : "no up/lora_B")} tensor");
                continue;
            }
            var a = file.GetInfo(down.Key);
            var b = file.GetInfo(up.Key);
            if (a.Shape.Length < 2 || b.Shape.Length < 2 || b.Shape[1] != a.Shape[0] || b.Shape.Skip(2).Any(d => d != 1))
            {
                problems.Add($"{path}: module '{module}': lora down [{string.Join(",", a.Shape)}] and up [{string.Join(",", b.Shape)}] do not form a rank-r product");
                continue;
            }
            string inner;
            try
            {
                if (down.Spelling == LoraSpelling.Kohya && !resolvers.ContainsKey(component))
                    resolvers[component] = new LoraModuleResolver(weightNames?.Invoke(component)
                        ?? throw new LoraKeyException($"kohya LoRA key '{down.Key}': the {component} weight names are needed to map it to a module"));
                inner = down.Spelling == LoraSpelling.Kohya ? resolvers[component].Resolve(down) : down.Module;
            }
            catch (LoraKeyException e)
            {
                problems.Add($"{path}: {e.Message}");
                continue;
            }
            int rank = (int)a.Shape[0];
            float alphaValue = fileAlpha ?? rank;
            if (alpha is not null)
            {
                float[] al = file.ReadAsFloat32(alpha.Key);
                if (al.Length != 1) { problems.Add($"{path}: '{alpha.Key}' must be a scalar"); continue; }
                alphaValue = al[0];
            }
            long inFeatures = a.ElementCount / rank;
            var delta = new LoraDelta(path, inner, file.ReadAsFloat32(down.Key), file.ReadAsFloat32(up.Key), rank, b.Shape[0], inFeatures, scale * alphaValue / rank);
            if (!result.TryGetValue(component, out var byWeight)) result[component] = byWeight = new(StringComparer.Ordinal);
            string weight = inner + ".weight";
            if (!byWeight.TryGetValue(weight, out var list)) byWeight[weight] = list = [];
            list.Add(delta);
        }
        if (problems.Count > 0) throw new ExportValidationException(problems);
        return result;
    }

    private static string LoraKeysMessage(string key)
    {
        try
        {
            LoraKeys.Parse(key);
            return $"tensor '{key}' is not a LoRA key";
        }
        catch (LoraKeyException e)
        {
            return e.Message;
        }
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

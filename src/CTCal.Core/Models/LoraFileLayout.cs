using System.Globalization;
using System.Text.Json;
using CTCal.Core.Safetensors;

namespace CTCal.Core.Models;

/// <summary>One adapted module of a LoRA file: where its tensors are and what shape they make.</summary>
/// <param name="Component"><see cref="LoraKeys.UNet"/>, <see cref="LoraKeys.TextEncoder"/>, <see cref="LoraKeys.Transformer"/> or <see cref="LoraKeys.TextEncoder2"/>.</param>
/// <param name="Module">The module path in the component's own weight names (kohya names already mapped back).</param>
/// <param name="DownKey">Key of the down (lora_A) tensor, [rank, in...].</param>
/// <param name="UpKey">Key of the up (lora_B) tensor, [out, rank(, 1, 1)].</param>
/// <param name="Alpha">The module's own alpha tensor (kohya), or null: then the file's <see cref="LoraFileLayout.MetadataAlpha"/>, else the rank.</param>
public sealed record LoraModule(string Component, string Module, string DownKey, string UpKey, double? Alpha, int Rank, long OutFeatures, long InFeatures)
{
    /// <summary>The alpha this module was trained with: its own, else the file's, else the rank (scale 1).</summary>
    public double EffectiveAlpha(double? fileAlpha) => Alpha ?? fileAlpha ?? Rank;
}

/// <summary>
/// The one reader (and metadata writer) of LoRA safetensors files, for the trainer and the exporter alike. Keys follow
/// <see cref="LoraKeys"/> (peft <c>lora_A/lora_B</c>, older diffusers <c>lora.down/lora.up</c>, kohya <c>lora_unet_*</c> /
/// <c>lora_te_*</c> with <c>lora_down/lora_up</c> and an optional scalar <c>.alpha</c> per module; kohya module names are mapped
/// back through the component's weight names). Without per-module alpha tensors, alpha comes from the metadata:
/// <c>ctcal.lora_alpha</c>, else <c>lora_alpha</c> of the peft config JSON <c>lora_adapter_metadata</c>, else alpha = rank.
/// Reading collects every problem (naming the file and key) instead of stopping at the first.
/// </summary>
public sealed class LoraFileLayout
{
    /// <summary>Metadata key of the alpha this project writes.</summary>
    public const string AlphaMetadataKey = "ctcal.lora_alpha";

    /// <summary>Metadata key of the rank this project writes.</summary>
    public const string RankMetadataKey = "ctcal.lora_rank";

    /// <summary>Metadata key of the peft LoraConfig JSON that diffusers reads back.</summary>
    public const string PeftConfigMetadataKey = "lora_adapter_metadata";

    private LoraFileLayout(IReadOnlyList<LoraModule> modules, double? metadataAlpha, IReadOnlyList<string> problems)
    {
        Modules = modules;
        MetadataAlpha = metadataAlpha;
        Problems = problems;
    }

    /// <summary>The adapted modules, in file order of their down tensors.</summary>
    public IReadOnlyList<LoraModule> Modules { get; }

    /// <summary>The alpha recorded in the metadata, if any.</summary>
    public double? MetadataAlpha { get; }

    /// <summary>Everything wrong with the file, each naming the file and key; empty when it can be used.</summary>
    public IReadOnlyList<string> Problems { get; }

    /// <summary>
    /// Reads the layout of <paramref name="file"/> (opened from <paramref name="path"/>, named in problems).
    /// <paramref name="weightNames"/> gives a component's weight names, needed only for kohya keys.
    /// </summary>
    public static LoraFileLayout Read(SafetensorsFile file, string path, Func<string, IEnumerable<string>>? weightNames = null)
    {
        var problems = new List<string>();
        double? metadataAlpha = ReadMetadataAlpha(file.Metadata, path, problems);
        var grouped = new Dictionary<(string Component, string Module), (LoraKey? Down, LoraKey? Up, LoraKey? Alpha)>();
        var order = new List<(string, string)>();
        foreach (var t in file.Tensors)
        {
            if (!LoraKeys.TryParse(t.Name, out var key))
            {
                problems.Add($"{path}: {NotALoraKey(t.Name)}");
                continue;
            }

            var id = (key.Component, key.Module);
            if (!grouped.TryGetValue(id, out var entry)) order.Add(id);
            bool taken = key.Part switch { LoraPart.Down => entry.Down is not null, LoraPart.Up => entry.Up is not null, _ => entry.Alpha is not null };
            if (taken)
            {
                problems.Add($"{path}: '{t.Name}' names a module part that another key already holds");
                continue;
            }

            grouped[id] = key.Part switch
            {
                LoraPart.Down => entry with { Down = key },
                LoraPart.Up => entry with { Up = key },
                _ => entry with { Alpha = key },
            };
        }

        var resolvers = new Dictionary<string, LoraModuleResolver>(StringComparer.Ordinal);
        var modules = new List<LoraModule>();
        var seen = new HashSet<(string, string)>();
        foreach (var id in order)
        {
            var (down, up, alpha) = grouped[id];
            if (down is null || up is null)
            {
                problems.Add($"{path}: module '{id.Item2}' has {(down is null ? "no down/lora_A" : "no up/lora_B")} tensor");
                continue;
            }

            var a = file.GetInfo(down.Key);
            var b = file.GetInfo(up.Key);
            if (a.Shape.Length < 2 || b.Shape.Length < 2 || a.Shape[0] < 1 || b.Shape[1] != a.Shape[0] || b.Shape.Skip(2).Any(d => d != 1))
            {
                problems.Add($"{path}: module '{id.Item2}': lora down [{string.Join(",", a.Shape)}] and up [{string.Join(",", b.Shape)}] do not form a rank-r product");
                continue;
            }

            string module;
            try
            {
                if (down.Spelling == LoraSpelling.Kohya && !resolvers.ContainsKey(down.Component))
                {
                    resolvers[down.Component] = new LoraModuleResolver(weightNames?.Invoke(down.Component)
                        ?? throw new LoraKeyException($"kohya LoRA key '{down.Key}': the model's {down.Component} weight names are needed to map it to a module"));
                }

                module = down.Spelling == LoraSpelling.Kohya ? resolvers[down.Component].Resolve(down) : down.Module;
            }
            catch (LoraKeyException e)
            {
                problems.Add($"{path}: {e.Message}");
                continue;
            }

            if (!seen.Add((down.Component, module)))
            {
                problems.Add($"{path}: '{down.Key}' adapts {down.Component} module '{module}', which another key already adapts");
                continue;
            }

            double? alphaValue = null;
            if (alpha is not null)
            {
                float[] values = file.ReadAsFloat32(alpha.Key);
                if (values.Length != 1)
                {
                    problems.Add($"{path}: '{alpha.Key}' must be a scalar");
                    continue;
                }

                alphaValue = values[0];
            }

            int rank = (int)a.Shape[0];
            var module1 = new LoraModule(down.Component, module, down.Key, up.Key, alphaValue, rank, b.Shape[0], a.ElementCount / rank);
            double effective = module1.EffectiveAlpha(metadataAlpha);
            if (!(effective > 0) || double.IsInfinity(effective))
            {
                problems.Add($"{path}: module '{module}' has LoRA alpha {effective.ToString("R", CultureInfo.InvariantCulture)}, not a positive number");
                continue;
            }

            modules.Add(module1);
        }

        if (modules.Count == 0 && problems.Count == 0)
        {
            problems.Add($"{path}: no LoRA down tensor ('*.lora_A.weight', '*.lora.down.weight' or kohya '*.lora_down.weight'); not a LoRA file");
        }

        return new LoraFileLayout(modules, metadataAlpha, problems);
    }

    /// <summary>
    /// The metadata this project writes with a LoRA file: the peft LoraConfig JSON (what diffusers reads back) and the rank
    /// and alpha under <see cref="RankMetadataKey"/> / <see cref="AlphaMetadataKey"/>.
    /// </summary>
    public static Dictionary<string, string> Metadata(int rank, double alpha, double dropout, IReadOnlyList<string> targetModules)
    {
        var config = new Dictionary<string, object>
        {
            ["r"] = rank,
            ["lora_alpha"] = alpha,
            ["lora_dropout"] = dropout,
            ["target_modules"] = targetModules,
        };
        return new Dictionary<string, string>
        {
            ["format"] = "pt",
            [PeftConfigMetadataKey] = JsonSerializer.Serialize(config),
            [RankMetadataKey] = rank.ToString(CultureInfo.InvariantCulture),
            [AlphaMetadataKey] = alpha.ToString("R", CultureInfo.InvariantCulture),
        };
    }

    private static string NotALoraKey(string key)
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

    private static double? ReadMetadataAlpha(IReadOnlyDictionary<string, string> metadata, string path, List<string> problems)
    {
        if (metadata.TryGetValue(AlphaMetadataKey, out string? text))
        {
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double a) && double.IsFinite(a))
            {
                return a;
            }

            problems.Add($"{path}: metadata '{AlphaMetadataKey}' = '{text}' is not a number");
            return null;
        }

        if (metadata.TryGetValue(PeftConfigMetadataKey, out string? json))
        {
            try
            {
                using var doc = JsonDocument.Parse(json);
                if (doc.RootElement.ValueKind == JsonValueKind.Object
                    && doc.RootElement.TryGetProperty("lora_alpha", out var la) && la.TryGetDouble(out double a))
                {
                    return a;
                }
            }
            catch (JsonException e)
            {
                problems.Add($"{path}: metadata '{PeftConfigMetadataKey}' is not valid JSON ({e.Message})");
            }
        }

        return null;
    }
}

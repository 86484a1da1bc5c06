namespace CTCal.Core.Models;

/// <summary>Which tensor of a LoRA module a key names.</summary>
public enum LoraPart
{
    /// <summary>[rank, in] (peft <c>lora_A</c>, diffusers <c>lora.down</c>, kohya <c>lora_down</c>).</summary>
    Down,
    /// <summary>[out, rank] (peft <c>lora_B</c>, diffusers <c>lora.up</c>, kohya <c>lora_up</c>).</summary>
    Up,
    /// <summary>Scalar alpha of the module (scale = alpha / rank).</summary>
    Alpha,
}

/// <summary>How a LoRA file spells its keys.</summary>
public enum LoraSpelling
{
    /// <summary><c>unet.{module}.lora_A.weight</c>, <c>unet.{module}.lora_B.weight</c>, <c>unet.{module}.alpha</c> (diffusers/peft; SD3: <c>transformer.{module}...</c>).</summary>
    Peft,
    /// <summary><c>unet.{module}.lora.down.weight</c>, <c>unet.{module}.lora.up.weight</c>, <c>unet.{module}.alpha</c> (older diffusers; the prefix is optional when read).</summary>
    Diffusers,
    /// <summary><c>lora_unet_{module with '.' as '_'}.lora_down.weight</c>, <c>.lora_up.weight</c>, <c>.alpha</c>; text encoder <c>lora_te_</c>.</summary>
    Kohya,
}

/// <summary>
/// One parsed LoRA tensor key. <see cref="Module"/> is the module path in diffusers/transformers naming (e.g.
/// <c>down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q</c>), except for <see cref="LoraSpelling.Kohya"/> keys,
/// where it is the underscore form until <see cref="LoraModuleResolver.Resolve"/> maps it back.
/// </summary>
public sealed record LoraKey(string Key, string Component, string Module, LoraPart Part, LoraSpelling Spelling);

/// <summary>Thrown for a LoRA key that cannot be mapped; the message names the key.</summary>
public sealed class LoraKeyException(string message) : Exception(message);

/// <summary>
/// The LoRA key grammar, written once: parses and formats tensor keys in peft, older diffusers and kohya spellings for
/// the <c>unet</c> and <c>text_encoder</c> components, and in the dotted spellings for SD3's <c>transformer</c> and
/// <c>text_encoder_2</c> (what diffusers' SD3 LoRA loader writes: <c>transformer.transformer_blocks.0.attn.to_q.lora_A.weight</c>,
/// <c>text_encoder_2.text_model...</c>; kohya's SD3 files name the original MMDiT modules, not diffusers', and are not
/// read); and decides whether a file is a LoRA.
/// </summary>
public static class LoraKeys
{
    public const string UNet = "unet";
    public const string TextEncoder = "text_encoder";
    /// <summary>SD3's MMDiT (<c>SD3Transformer2DModel</c>); dotted spellings only.</summary>
    public const string Transformer = "transformer";
    /// <summary>SD3's second CLIP text encoder (CLIP-G); dotted spellings only.</summary>
    public const string TextEncoder2 = "text_encoder_2";

    private const string KohyaUNet = "lora_unet_";
    private const string KohyaTextEncoder = "lora_te_";

    private static readonly (string Suffix, LoraPart Part, LoraSpelling Spelling)[] DottedSuffixes =
    [
        (".lora_A.weight", LoraPart.Down, LoraSpelling.Peft),
        (".lora_B.weight", LoraPart.Up, LoraSpelling.Peft),
        (".lora.down.weight", LoraPart.Down, LoraSpelling.Diffusers),
        (".lora.up.weight", LoraPart.Up, LoraSpelling.Diffusers),
        (".alpha", LoraPart.Alpha, LoraSpelling.Peft),
    ];

    private static readonly (string Suffix, LoraPart Part)[] KohyaSuffixes =
    [
        (".lora_down.weight", LoraPart.Down),
        (".lora_up.weight", LoraPart.Up),
        (".alpha", LoraPart.Alpha),
    ];

    /// <summary>Formats the key of <paramref name="part"/> of <paramref name="module"/> (dotted path) in <paramref name="spelling"/>.</summary>
    public static string Format(string component, string module, LoraPart part, LoraSpelling spelling)
    {
        CheckComponent(component);
        if (string.IsNullOrEmpty(module)) throw new ArgumentException("module path is empty", nameof(module));
        if (component is Transformer or TextEncoder2 && spelling == LoraSpelling.Kohya)
            throw new ArgumentException($"LoRA component '{component}' has no kohya spelling", nameof(spelling));
        return spelling switch
        {
            LoraSpelling.Peft => $"{component}.{module}." + (part switch { LoraPart.Down => "lora_A.weight", LoraPart.Up => "lora_B.weight", _ => "alpha" }),
            LoraSpelling.Diffusers => $"{component}.{module}." + (part switch { LoraPart.Down => "lora.down.weight", LoraPart.Up => "lora.up.weight", _ => "alpha" }),
            LoraSpelling.Kohya => (component == UNet ? KohyaUNet : KohyaTextEncoder) + KohyaModule(module)
                + (part switch { LoraPart.Down => ".lora_down.weight", LoraPart.Up => ".lora_up.weight", _ => ".alpha" }),
            _ => throw new ArgumentOutOfRangeException(nameof(spelling)),
        };
    }

    /// <summary>The underscore form kohya uses for a dotted module path.</summary>
    public static string KohyaModule(string module) => module.Replace('.', '_');

    /// <summary>
    /// Parses a LoRA tensor key. Dotted keys without a <c>unet.</c>/<c>text_encoder.</c>/<c>transformer.</c>/<c>text_encoder_2.</c>
    /// prefix belong to the UNet (whose module paths never start with those); a dotted
    /// <c>.alpha</c> key is reported as <see cref="LoraSpelling.Peft"/> (peft and diffusers share it). False for any other key.
    /// </summary>
    public static bool TryParse(string key, out LoraKey parsed)
    {
        parsed = null!;
        if (key.StartsWith(KohyaUNet, StringComparison.Ordinal) || key.StartsWith(KohyaTextEncoder, StringComparison.Ordinal))
        {
            string component = key.StartsWith(KohyaUNet, StringComparison.Ordinal) ? UNet : TextEncoder;
            string rest = key[(component == UNet ? KohyaUNet : KohyaTextEncoder).Length..];
            foreach (var (suffix, part) in KohyaSuffixes)
            {
                if (!rest.EndsWith(suffix, StringComparison.Ordinal)) continue;
                string module = rest[..^suffix.Length];
                if (module.Length == 0 || module.Contains('.')) return false;
                parsed = new LoraKey(key, component, module, part, LoraSpelling.Kohya);
                return true;
            }
            return false;
        }
        foreach (var (suffix, part, spelling) in DottedSuffixes)
        {
            if (!key.EndsWith(suffix, StringComparison.Ordinal)) continue;
            string module = key[..^suffix.Length];
            string component = UNet;
            if (module.StartsWith(UNet + ".", StringComparison.Ordinal)) module = module[(UNet.Length + 1)..];
            else if (module.StartsWith(TextEncoder + ".", StringComparison.Ordinal)) (component, module) = (TextEncoder, module[(TextEncoder.Length + 1)..]);
            else if (module.StartsWith(Transformer + ".", StringComparison.Ordinal)) (component, module) = (Transformer, module[(Transformer.Length + 1)..]);
            else if (module.StartsWith(TextEncoder2 + ".", StringComparison.Ordinal)) (component, module) = (TextEncoder2, module[(TextEncoder2.Length + 1)..]);
            if (module.Length == 0) return false;
            parsed = new LoraKey(key, component, module, part, spelling);
            return true;
        }
        return false;
    }

    /// <summary>Parses a key or throws <see cref="LoraKeyException"/> naming it.</summary>
    public static LoraKey Parse(string key) => TryParse(key, out var parsed) ? parsed
        : throw new LoraKeyException($"tensor '{key}' is not a LoRA key (expected *.lora_A.weight, *.lora_B.weight, *.lora.down.weight, *.lora.up.weight, "
            + "*.alpha, or kohya lora_unet_*/lora_te_* with .lora_down.weight, .lora_up.weight or .alpha)");

    /// <summary>The one "is this a LoRA file" check: some tensor is the down or up matrix of a LoRA module, in any spelling.</summary>
    public static bool IsLoraFile(IEnumerable<string> tensorNames) =>
        tensorNames.Any(n => TryParse(n, out var k) && k.Part != LoraPart.Alpha);

    private static void CheckComponent(string component)
    {
        if (component is not (UNet or TextEncoder or Transformer or TextEncoder2))
            throw new ArgumentException($"LoRA component must be '{UNet}', '{TextEncoder}', '{Transformer}' or '{TextEncoder2}', got '{component}'", nameof(component));
    }
}

/// <summary>
/// Maps kohya module names (dots lost) back to module paths, given the weight names of the component (e.g.
/// <c>down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight</c>): each known module path is compared in its
/// underscore form. A name no module has, or more than one has, is a <see cref="LoraKeyException"/> naming the key.
/// </summary>
public sealed class LoraModuleResolver
{
    private readonly Dictionary<string, List<string>> _byKohya = new(StringComparer.Ordinal);

    public LoraModuleResolver(IEnumerable<string> weightNames)
    {
        foreach (string name in weightNames)
        {
            if (!name.EndsWith(".weight", StringComparison.Ordinal)) continue;
            string module = name[..^".weight".Length];
            string kohya = LoraKeys.KohyaModule(module);
            if (!_byKohya.TryGetValue(kohya, out var list)) _byKohya[kohya] = list = [];
            if (!list.Contains(module)) list.Add(module);
        }
    }

    /// <summary>The dotted module path of <paramref name="key"/>; dotted spellings pass through unchanged.</summary>
    public string Resolve(LoraKey key)
    {
        if (key.Spelling != LoraSpelling.Kohya) return key.Module;
        if (!_byKohya.TryGetValue(key.Module, out var modules))
            throw new LoraKeyException($"kohya LoRA key '{key.Key}': no {key.Component} module is named '{key.Module}' (with '.' as '_')");
        if (modules.Count > 1)
            throw new LoraKeyException($"kohya LoRA key '{key.Key}' is ambiguous: {key.Component} modules {string.Join(", ", modules.Select(m => $"'{m}'"))} all read '{key.Module}'");
        return modules[0];
    }
}

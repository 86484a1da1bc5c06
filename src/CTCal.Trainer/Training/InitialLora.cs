using CTCal.Core.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// The LoRA a run continues from (<c>--init-lora</c>): a file in any spelling <see cref="LoraFile.Load"/> reads (peft,
/// older diffusers, kohya <c>lora_unet_*</c>/<c>lora_te_*</c> with per-module alpha). The run attaches its adapters to
/// exactly the file's modules (<see cref="Targets"/>) instead of the default targets, so that the trained LoRA is the same
/// LoRA, and copies the file's factors into them (<see cref="LoadInto"/>). Checked when read, each error naming the file
/// and, where there is one, the module: the rank and alpha must be the run's (one rank and alpha per file); every module
/// must be a <see cref="Linear"/> of the model (the trainer's adapters are linear; kohya's conv "LoCon" modules cannot be
/// continued); text-encoder modules need <see cref="LoraOptions.TextEncoder"/>. Owns the file's tensors.
/// </summary>
public sealed class InitialLora : IDisposable
{
    private readonly Dictionary<string, Tensor> _tensors;
    private readonly Dictionary<string, List<string>> _modules;

    private InitialLora(string path, Dictionary<string, Tensor> tensors, Dictionary<string, List<string>> modules)
    {
        Path = path;
        _tensors = tensors;
        _modules = modules;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Reads and checks <paramref name="path"/> against <paramref name="model"/> and the run's <paramref name="lora"/> options.</summary>
    public static InitialLora Read(string path, ITrainableDiffusionModel model, LoraOptions lora)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(lora);
        if (!File.Exists(path)) throw new FileNotFoundException($"--init-lora {path}: no such LoRA file", path);
        // LoraKeys also knows parts this model may not have (SD3's transformer and text_encoder_2 for a UNet model).
        nn.Module Component(string name) =>
            name == LoraKeys.TextEncoder ? model.TextEncoder
            : name == model.DenoiserComponent ? model.UNet
            : throw new InvalidDataException($"{path}: the LoRA adapts '{name}', a part this model does not have (it continues {model.DenoiserComponent} and text_encoder LoRAs)");
        var (tensors, rank, alpha) = LoraFile.Load(path, component => Component(component).named_parameters().Select(p => p.name).ToList());
        try
        {
            if (rank != lora.Rank)
                throw new InvalidDataException($"{path}: the LoRA has rank {rank} but the run's is {lora.Rank}; pass --lora-rank {rank} to continue it");
            if (Math.Abs(alpha - lora.EffectiveAlpha) > 1e-6 * Math.Max(1, Math.Abs(alpha)))
                throw new InvalidDataException($"{path}: the LoRA has alpha {alpha} but the run's is {lora.EffectiveAlpha}; pass --lora-alpha {alpha} to continue it");

            var modules = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            const string DownSuffix = ".lora_A.weight";
            foreach (string key in tensors.Keys.Where(k => k.EndsWith(DownSuffix, StringComparison.Ordinal)).Order(StringComparer.Ordinal))
            {
                int dot = key.IndexOf('.', StringComparison.Ordinal);
                string component = key[..dot], module = key[(dot + 1)..^DownSuffix.Length];
                if (!modules.TryGetValue(component, out var list)) modules[component] = list = [];
                list.Add(module);
            }
            foreach (var (component, list) in modules)
            {
                if (component == LoraKeys.TextEncoder && !lora.TextEncoder)
                    throw new InvalidDataException($"{path}: the LoRA adapts the text encoder ({list.Count} modules, e.g. '{list[0]}'); pass --train-text-encoder to continue it");
                var linear = Component(component).named_modules().Where(m => m.module is Linear).Select(m => m.name).ToHashSet(StringComparer.Ordinal);
                foreach (string module in list)
                    if (!linear.Contains(module))
                        throw new InvalidDataException($"{path}: '{module}' of the {component} is not a linear layer of this model; the trainer's LoRA adapts linear layers only");
            }
            return new InitialLora(path, tensors, modules);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>The file's module paths of <paramref name="component"/> (<c>unet</c> or <c>text_encoder</c>), or null when it adapts none there.</summary>
    public IReadOnlyList<string>? Targets(string component) => _modules.TryGetValue(component, out var list) ? list : null;

    /// <summary>Copies the file's factors into <paramref name="adapters"/> (attached to <see cref="Targets"/> of its component).</summary>
    public void LoadInto(LoraAdapters adapters)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        adapters.Load(_tensors, Path);
    }

    public void Dispose()
    {
        foreach (var t in _tensors.Values) t.Dispose();
        _tensors.Clear();
    }
}

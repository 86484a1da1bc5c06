using CTCal.Core.Diffusers;
using CTCal.Core.Weights;

namespace CTCal.Core.Models;

/// <summary>Which parts of a pipeline folder are required.</summary>
[Flags]
public enum ModelComponents
{
    None = 0,
    Unet = 1,
    Vae = 2,
    TextEncoder = 4,
    Tokenizer = 8,
    Scheduler = 16,
    All = Unet | Vae | TextEncoder | Tokenizer | Scheduler,
}

/// <summary>
/// The config and weights of one model component (<c>unet/</c>, <c>vae/</c>, <c>text_encoder/</c>); <c>WeightsPath</c> is a
/// <c>.safetensors</c> file or a sharded checkpoint's <c>.safetensors.index.json</c> (open it with <see cref="TensorSource.Open"/>).
/// </summary>
public sealed record ComponentFiles(string Component, string ConfigPath, string WeightsPath);

/// <summary>The CLIP BPE files of <c>tokenizer/</c>.</summary>
public sealed record TokenizerFiles(string VocabPath, string MergesPath);

/// <summary>
/// A diffusers pipeline folder (the layout <c>save_pretrained</c> writes), with every component's files resolved:
/// <c>unet/config.json</c> + <c>unet/diffusion_pytorch_model[.variant].safetensors</c>, the same for <c>vae/</c>,
/// <c>text_encoder/config.json</c> + <c>text_encoder/model[.variant].safetensors</c>, <c>tokenizer/vocab.json</c> +
/// <c>merges.txt</c>, <c>scheduler/scheduler_config.json</c>, and <c>model_index.json</c> when present.
/// Weights are read from safetensors only; a component with only <c>.bin</c>/<c>.ckpt</c>/<c>.pt</c>/<c>.pth</c> weights is
/// refused. Files may be symbolic links (the Hugging Face cache links snapshot files to its blob store).
/// </summary>
public sealed class ModelFolder
{
    private readonly ComponentFiles? _unet;
    private readonly ComponentFiles? _vae;
    private readonly ComponentFiles? _textEncoder;
    private readonly TokenizerFiles? _tokenizer;
    private readonly string? _schedulerConfig;

    private ModelFolder(string root, string? modelIndexPath, ComponentFiles? unet, ComponentFiles? vae, ComponentFiles? textEncoder,
        TokenizerFiles? tokenizer, string? schedulerConfig)
    {
        Root = root;
        ModelIndexPath = modelIndexPath;
        _unet = unet;
        _vae = vae;
        _textEncoder = textEncoder;
        _tokenizer = tokenizer;
        _schedulerConfig = schedulerConfig;
    }

    /// <summary>The folder's full path.</summary>
    public string Root { get; }

    /// <summary><c>model_index.json</c>, or null when the folder has none.</summary>
    public string? ModelIndexPath { get; }

    /// <summary>UNet files. <exception cref="ModelFolderException">not resolved (not required when opening and absent).</exception></summary>
    public ComponentFiles Unet => _unet ?? throw NotResolved("unet");

    /// <summary>VAE files.</summary>
    public ComponentFiles Vae => _vae ?? throw NotResolved("vae");

    /// <summary>Text encoder files.</summary>
    public ComponentFiles TextEncoder => _textEncoder ?? throw NotResolved("text_encoder");

    /// <summary>Tokenizer files.</summary>
    public TokenizerFiles Tokenizer => _tokenizer ?? throw NotResolved("tokenizer");

    /// <summary><c>scheduler/scheduler_config.json</c>.</summary>
    public string SchedulerConfigPath => _schedulerConfig ?? throw NotResolved("scheduler");

    /// <summary>The components whose files were all found.</summary>
    public ModelComponents Available =>
        (_unet is null ? 0 : ModelComponents.Unet) | (_vae is null ? 0 : ModelComponents.Vae)
        | (_textEncoder is null ? 0 : ModelComponents.TextEncoder) | (_tokenizer is null ? 0 : ModelComponents.Tokenizer)
        | (_schedulerConfig is null ? 0 : ModelComponents.Scheduler);

    public UNetConfig LoadUNetConfig() => UNetConfig.Load(Unet.ConfigPath);

    public VaeConfig LoadVaeConfig() => VaeConfig.Load(Vae.ConfigPath);

    public ClipTextConfig LoadTextEncoderConfig() => ClipTextConfig.Load(TextEncoder.ConfigPath);

    /// <summary><c>model_index.json</c> parsed, or null when the folder has none.</summary>
    public ModelIndex? LoadModelIndex() => ModelIndexPath is null ? null : ModelIndex.Load(ModelIndexPath);

    private ModelFolderException NotResolved(string component) =>
        new(Root, [$"component '{component}' was not required when the folder was opened and its files are missing"]);

    /// <summary>
    /// Resolves the files of <paramref name="required"/> components (others are resolved when present).
    /// Without <paramref name="variant"/> the plain weights file is preferred and <c>*.fp16.safetensors</c> used when it is
    /// the only one; with a variant (e.g. "fp16") <c>*.{variant}.safetensors</c> is preferred, the plain file the fallback.
    /// Each file may be sharded (<c>*.safetensors.index.json</c> beside its shards).
    /// </summary>
    /// <exception cref="ModelFolderException">the folder is missing, is a pickle checkpoint file, or required files are
    /// missing or pickle-only; the message lists every problem.</exception>
    public static ModelFolder Open(string root, ModelComponents required = ModelComponents.All, string? variant = null)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (variant is not null && (variant.Length == 0 || variant.IndexOfAny(['/', '\\', '.']) >= 0))
            throw new ArgumentException($"variant '{variant}' must be a plain name such as fp16", nameof(variant));
        if (File.Exists(root))
        {
            if (WeightFiles.IsPickle(root)) throw new ModelFolderException(root, [WeightFiles.PickleRefusal(root)]);
            throw new ModelFolderException(root, ["expected a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), found a file"]);
        }
        if (!Directory.Exists(root)) throw new ModelFolderException(root, ["the folder does not exist"]);
        string full = Path.GetFullPath(root);

        var problems = new List<string>();
        var unet = ResolveComponent(full, "unet", "diffusion_pytorch_model", variant, required.HasFlag(ModelComponents.Unet), problems);
        var vae = ResolveComponent(full, "vae", "diffusion_pytorch_model", variant, required.HasFlag(ModelComponents.Vae), problems);
        var textEncoder = ResolveComponent(full, "text_encoder", "model", variant, required.HasFlag(ModelComponents.TextEncoder), problems);

        TokenizerFiles? tokenizer = null;
        {
            var missing = new List<string>();
            string vocab = Required(full, "tokenizer/vocab.json", missing);
            string merges = Required(full, "tokenizer/merges.txt", missing);
            if (missing.Count == 0) tokenizer = new TokenizerFiles(vocab, merges);
            else if (required.HasFlag(ModelComponents.Tokenizer)) problems.AddRange(missing.Select(m => $"missing {m}"));
        }

        string? scheduler = null;
        {
            var missing = new List<string>();
            string path = Required(full, "scheduler/scheduler_config.json", missing);
            if (missing.Count == 0) scheduler = path;
            else if (required.HasFlag(ModelComponents.Scheduler)) problems.AddRange(missing.Select(m => $"missing {m}"));
        }

        if (problems.Count > 0) throw new ModelFolderException(full, problems);
        string index = Path.Combine(full, "model_index.json");
        return new ModelFolder(full, File.Exists(index) ? index : null, unet, vae, textEncoder, tokenizer, scheduler);
    }

    private static string Required(string root, string relative, List<string> missing)
    {
        string path = Path.Combine(root, relative.Replace('/', Path.DirectorySeparatorChar));
        if (!File.Exists(path)) missing.Add(relative);
        return path;
    }

    private static ComponentFiles? ResolveComponent(string root, string component, string weightsStem, string? variant,
        bool required, List<string> problems)
    {
        var local = new List<string>();
        string folder = Path.Combine(root, component);
        var missing = new List<string>();
        string config = Required(root, $"{component}/config.json", missing);
        local.AddRange(missing.Select(m => $"missing {m}"));

        string plain = $"{weightsStem}.safetensors";
        var candidates = ComponentWeightsFile.Candidates(variant, [weightsStem]);
        string? weights = ComponentWeightsFile.Find(folder, variant, [weightsStem]);
        if (weights is null)
        {
            var pickles = Directory.Exists(folder)
                ? Directory.EnumerateFiles(folder).Where(WeightFiles.IsPickle).Order(StringComparer.Ordinal).ToList()
                : [];
            if (pickles.Count > 0)
            {
                local.Add($"{component}: no safetensors weights, only pickle checkpoint(s) {string.Join(", ", pickles.Select(p => Path.GetFileName(p)))}; " +
                    "pickle can execute arbitrary code when loaded, so it is not read. Convert the weights to safetensors " +
                    $"({component}/{plain}), e.g. with diffusers' save_pretrained(..., safe_serialization=True)");
            }
            else
            {
                local.Add($"missing {component}/{string.Join(" or ", candidates.Where(c => !ComponentWeightsFile.IsShardIndex(c)))} (or a sharded .safetensors.index.json)");
            }
        }

        if (local.Count == 0) return new ComponentFiles(component, config, weights!);
        if (required) problems.AddRange(local);
        return null;
    }
}

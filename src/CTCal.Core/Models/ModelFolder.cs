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
    /// <summary>The SD 1.x/2.x pipeline (what <see cref="ModelFolder.Open"/> requires by default).</summary>
    All = Unet | Vae | TextEncoder | Tokenizer | Scheduler,
    /// <summary>SD3: <c>transformer/</c> (diffusion_pytorch_model weights).</summary>
    Transformer = 32,
    /// <summary>SD3: <c>text_encoder_2/</c> (CLIP-G with projection, model weights).</summary>
    TextEncoder2 = 64,
    /// <summary>SD3: <c>text_encoder_3/</c> (T5, model weights); optional in SD3 pipelines.</summary>
    TextEncoder3 = 128,
    /// <summary>SD3: <c>tokenizer_2/</c> (CLIP BPE vocab.json + merges.txt).</summary>
    Tokenizer2 = 256,
    /// <summary>The SD3 pipeline without its optional T5 (text_encoder_3, tokenizer_3).</summary>
    Sd3 = Transformer | Vae | TextEncoder | TextEncoder2 | Tokenizer | Tokenizer2 | Scheduler,
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
/// <c>merges.txt</c>, <c>scheduler/scheduler_config.json</c>, and <c>model_index.json</c> when present. SD3 folders
/// (<see cref="ModelComponents.Sd3"/>) have <c>transformer/</c>, <c>text_encoder_2/</c>, <c>tokenizer_2/</c> and optionally
/// <c>text_encoder_3/</c> (T5) instead of <c>unet/</c>; every part is resolved when present, required only when asked for.
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
    private readonly ComponentFiles? _transformer;
    private readonly ComponentFiles? _textEncoder2;
    private readonly ComponentFiles? _textEncoder3;
    private readonly TokenizerFiles? _tokenizer2;

    private ModelFolder(string root, string? modelIndexPath, ComponentFiles? unet, ComponentFiles? vae, ComponentFiles? textEncoder,
        TokenizerFiles? tokenizer, string? schedulerConfig, ComponentFiles? transformer, ComponentFiles? textEncoder2,
        ComponentFiles? textEncoder3, TokenizerFiles? tokenizer2)
    {
        Root = root;
        ModelIndexPath = modelIndexPath;
        _unet = unet;
        _vae = vae;
        _textEncoder = textEncoder;
        _tokenizer = tokenizer;
        _schedulerConfig = schedulerConfig;
        _transformer = transformer;
        _textEncoder2 = textEncoder2;
        _textEncoder3 = textEncoder3;
        _tokenizer2 = tokenizer2;
    }

    /// <summary>The <c>_class_name</c> of diffusers' SD3 pipeline in <c>model_index.json</c>.</summary>
    public const string SD3PipelineClass = "StableDiffusion3Pipeline";

    /// <summary>The <c>_class_name</c> Optimum (and CTCal's exporter) write into an SD3 ONNX folder's <c>model_index.json</c>.</summary>
    public const string SD3OnnxPipelineClass = "ORTStableDiffusion3Pipeline";

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

    /// <summary>SD3 transformer files (<c>transformer/</c>).</summary>
    public ComponentFiles Transformer => _transformer ?? throw NotResolved("transformer");

    /// <summary>SD3 second CLIP text encoder files (<c>text_encoder_2/</c>).</summary>
    public ComponentFiles TextEncoder2 => _textEncoder2 ?? throw NotResolved("text_encoder_2");

    /// <summary>SD3 T5 files (<c>text_encoder_3/</c>), or null: the part is optional in SD3 pipelines.</summary>
    public ComponentFiles? TextEncoder3OrNull => _textEncoder3;

    /// <summary>SD3 second CLIP tokenizer files (<c>tokenizer_2/</c>).</summary>
    public TokenizerFiles Tokenizer2 => _tokenizer2 ?? throw NotResolved("tokenizer_2");

    /// <summary>
    /// A Stable Diffusion 3 folder: <c>model_index.json</c> names <see cref="SD3PipelineClass"/> (or, for an ONNX export,
    /// <see cref="SD3OnnxPipelineClass"/>), or (no index) the folder has <c>transformer/</c> and no <c>unet/</c>.
    /// </summary>
    public bool IsSD3 => ModelIndexPath is not null
        ? ModelIndex.Load(ModelIndexPath).ClassName is SD3PipelineClass or SD3OnnxPipelineClass
        : _transformer is not null && _unet is null;

    /// <summary>The components whose files were all found.</summary>
    public ModelComponents Available =>
        (_unet is null ? 0 : ModelComponents.Unet) | (_vae is null ? 0 : ModelComponents.Vae)
        | (_textEncoder is null ? 0 : ModelComponents.TextEncoder) | (_tokenizer is null ? 0 : ModelComponents.Tokenizer)
        | (_schedulerConfig is null ? 0 : ModelComponents.Scheduler)
        | (_transformer is null ? 0 : ModelComponents.Transformer) | (_textEncoder2 is null ? 0 : ModelComponents.TextEncoder2)
        | (_textEncoder3 is null ? 0 : ModelComponents.TextEncoder3) | (_tokenizer2 is null ? 0 : ModelComponents.Tokenizer2);

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

        var transformer = ResolveComponent(full, "transformer", "diffusion_pytorch_model", variant, required.HasFlag(ModelComponents.Transformer), problems);
        var textEncoder2 = ResolveComponent(full, "text_encoder_2", "model", variant, required.HasFlag(ModelComponents.TextEncoder2), problems);
        var textEncoder3 = ResolveComponent(full, "text_encoder_3", "model", variant, required.HasFlag(ModelComponents.TextEncoder3), problems);
        var tokenizer = ResolveTokenizer(full, "tokenizer", required.HasFlag(ModelComponents.Tokenizer), problems);
        var tokenizer2 = ResolveTokenizer(full, "tokenizer_2", required.HasFlag(ModelComponents.Tokenizer2), problems);

        string? scheduler = null;
        {
            var missing = new List<string>();
            string path = Required(full, "scheduler/scheduler_config.json", missing);
            if (missing.Count == 0) scheduler = path;
            else if (required.HasFlag(ModelComponents.Scheduler)) problems.AddRange(missing.Select(m => $"missing {m}"));
        }

        if (problems.Count > 0) throw new ModelFolderException(full, problems);
        string index = Path.Combine(full, "model_index.json");
        return new ModelFolder(full, File.Exists(index) ? index : null, unet, vae, textEncoder, tokenizer, scheduler,
            transformer, textEncoder2, textEncoder3, tokenizer2);
    }

    private static TokenizerFiles? ResolveTokenizer(string root, string folder, bool required, List<string> problems)
    {
        var missing = new List<string>();
        string vocab = Required(root, $"{folder}/vocab.json", missing);
        string merges = Required(root, $"{folder}/merges.txt", missing);
        if (missing.Count == 0) return new TokenizerFiles(vocab, merges);
        if (required) problems.AddRange(missing.Select(m => $"missing {m}"));
        return null;
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

namespace CTCal.Core.Diffusers;

/// <summary>
/// One published Stable Diffusion configuration as data: the text of each config file a diffusers folder of it carries
/// (<c>unet/config.json</c>, <c>vae/config.json</c>, <c>text_encoder/config.json</c>, <c>scheduler/scheduler_config.json</c>,
/// <c>model_index.json</c>, <c>tokenizer/special_tokens_map.json</c>, <c>tokenizer/tokenizer_config.json</c>).
/// The weights are never part of it: a writer generates them from these configs (see <see cref="ReferenceModels"/>).
/// </summary>
/// <param name="Kind">The command-line name: <c>sd15</c>, <c>sd21</c>, <c>sd21-base</c>.</param>
/// <param name="Source">The Hugging Face repository whose configs these are.</param>
/// <param name="UnetConfigJson">unet/config.json.</param>
/// <param name="VaeConfigJson">vae/config.json.</param>
/// <param name="TextEncoderConfigJson">text_encoder/config.json.</param>
/// <param name="SchedulerConfigJson">scheduler/scheduler_config.json.</param>
/// <param name="ModelIndexJson">model_index.json.</param>
/// <param name="SpecialTokensMapJson">tokenizer/special_tokens_map.json (SD1 pads with &lt;|endoftext|&gt;, SD2 with "!", id 0).</param>
/// <param name="TokenizerConfigJson">tokenizer/tokenizer_config.json.</param>
public sealed record ReferenceModel(
    string Kind,
    string Source,
    string UnetConfigJson,
    string VaeConfigJson,
    string TextEncoderConfigJson,
    string SchedulerConfigJson,
    string ModelIndexJson,
    string SpecialTokensMapJson,
    string TokenizerConfigJson)
{
    /// <summary>The UNet config parsed by Core's parser.</summary>
    public UNetConfig Unet => UNetConfig.Parse(UnetConfigJson, $"{Kind}:unet/config.json");

    /// <summary>The VAE config parsed by Core's parser.</summary>
    public VaeConfig Vae => VaeConfig.Parse(VaeConfigJson, $"{Kind}:vae/config.json");

    /// <summary>The text encoder config parsed by Core's parser.</summary>
    public ClipTextConfig TextEncoder => ClipTextConfig.Parse(TextEncoderConfigJson, $"{Kind}:text_encoder/config.json");

    /// <summary>The scheduler config parsed by Core's parser.</summary>
    public Schedulers.SchedulerConfig Scheduler => Schedulers.SchedulerConfig.Parse(SchedulerConfigJson, $"{Kind}:scheduler/scheduler_config.json");

    /// <summary>model_index.json parsed by Core's parser.</summary>
    public ModelIndex Index => ModelIndex.Parse(ModelIndexJson, $"{Kind}:model_index.json");
}

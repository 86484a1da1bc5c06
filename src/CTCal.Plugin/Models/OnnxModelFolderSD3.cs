using CTCal.Contracts;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;

namespace CTCal.Plugin.Models;

/// <summary>
/// SD3 ONNX folders in the layout Optimum writes for <c>ORTStableDiffusion3Pipeline</c> (and CTCal's exporter):
/// <c>transformer/</c>, <c>text_encoder/</c> (CLIP-L), <c>text_encoder_2/</c> (CLIP-G), optional <c>text_encoder_3/</c>
/// (T5, with <c>tokenizer_3/spiece.model</c>), <c>vae_decoder/</c>, optional <c>vae_encoder/</c>, <c>tokenizer/</c>,
/// <c>tokenizer_2/</c> and <c>scheduler/scheduler_config.json</c> (FlowMatchEulerDiscreteScheduler, whose shift the
/// sampler uses). Unlike SD 1.x/2.x folders nothing is inferred from graphs: the configs are required.
/// </summary>
internal sealed partial record OnnxModelFolder
{
    /// <summary>Files an SD3 folder must have, relative to it.</summary>
    public static readonly string[] RequiredFilesSD3 =
    {
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer_2/vocab.json",
        "tokenizer_2/merges.txt",
        "text_encoder/model.onnx",
        "text_encoder_2/model.onnx",
        "transformer/model.onnx",
        "transformer/config.json",
        "vae_decoder/model.onnx",
        "vae_decoder/config.json",
        "scheduler/scheduler_config.json",
    };

    /// <summary>Whether the folder is an SD3 model (transformer, three text encoders, flow matching).</summary>
    public bool IsSD3 => Info.Family == ModelFamily.Sd3;

    public string Tokenizer2Folder => Path.Combine(Folder, "tokenizer_2");

    public string Tokenizer3Folder => Path.Combine(Folder, "tokenizer_3");

    public string TextEncoder2Path => Path.Combine(Folder, "text_encoder_2", "model.onnx");

    /// <summary>The T5 encoder, or null: SD3 folders may leave it out (the pipeline then uses zeros in its place).</summary>
    public string? TextEncoder3Path => File.Exists(Path.Combine(Folder, "text_encoder_3", "model.onnx"))
        ? Path.Combine(Folder, "text_encoder_3", "model.onnx")
        : null;

    public string TransformerPath => Path.Combine(Folder, "transformer", "model.onnx");

    /// <summary>The core's rule (<see cref="ModelFolder.IsSD3"/>: model_index.json's class, else the folders), or the manifest's family.</summary>
    private static bool IsSD3Folder(string folder)
    {
        if (OnnxModelManifest.TryRead(folder)?.Family is { } family)
        {
            return family == ModelFamily.Sd3;
        }

        try
        {
            return ModelFolder.Open(folder, ModelComponents.None).IsSD3;
        }
        catch (DiffusersConfigException e)
        {
            throw new InvalidDataException($"{folder}: {e.Message}", e);
        }
    }

    private static OnnxModelFolder LoadSD3(string folder)
    {
        var missing = RequiredFilesSD3.Where(f => !File.Exists(Path.Combine(folder, f))).ToArray();
        if (missing.Length > 0)
        {
            throw new InvalidDataException($"{folder}: not a complete SD3 ONNX model folder, missing {string.Join(", ", missing)}");
        }

        string id = Path.GetFileName(folder.TrimEnd(Path.DirectorySeparatorChar));
        var manifest = OnnxModelManifest.TryRead(folder);
        string schedulerPath = Path.Combine(folder, "scheduler", "scheduler_config.json");
        string vaePath = Path.Combine(folder, "vae_decoder", "config.json");
        string transformerPath = Path.Combine(folder, "transformer", "config.json");
        var scheduler = LoadConfig(schedulerPath, SchedulerConfig.Load)!;
        var vae = LoadConfig(vaePath, VaeConfig.Load)!;
        var transformer = LoadConfig(transformerPath, SD3TransformerConfig.Load)!;
        if (scheduler.ClassName is { } name && name != FlowMatchEulerDiscreteScheduler.ClassName)
        {
            throw new InvalidDataException(
                $"{schedulerPath}: '_class_name' is \"{name}\"; an SD3 model samples with {FlowMatchEulerDiscreteScheduler.ClassName}");
        }

        int native = transformer.SampleSize * vae.DownscaleFactor;
        int width = manifest?.Width ?? native;
        int height = manifest?.Height ?? native;
        if (width % 8 != 0 || height % 8 != 0 || width <= 0 || height <= 0)
        {
            throw new InvalidDataException($"{folder}: native size {width}x{height} (manifest, or {transformerPath} sample_size x the VAE's scale) must be positive multiples of 8");
        }

        bool hasEncoder = File.Exists(Path.Combine(folder, "vae_encoder", "model.onnx"));
        var info = new ModelInfo(id, manifest?.Name ?? id, folder, ModelFamily.Sd3, width, height, hasEncoder, manifest?.Description);
        return new OnnxModelFolder(info, manifest?.VaeScalingFactor ?? vae.ScalingFactor, vae.DownscaleFactor)
        {
            Scheduler = scheduler,
            VaeShiftFactor = manifest?.VaeShiftFactor ?? vae.ShiftFactor,
            ExportProfile = manifest?.OptimizeOrPlain ?? "plain",
            Precision = manifest?.PrecisionOrDerived ?? "fp32",
        };
    }
}

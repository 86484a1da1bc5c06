namespace CTCal.Plugin;

/// <summary>Metadata values of this plugin's exports (attribute arguments must be constants).</summary>
internal static class PluginInfo
{
    public const string Version = "0.1.0";

    /// <summary>The id a host's plugins.json is expected to give this plugin (the package manifest's <c>id</c>).</summary>
    public const string PackageId = "ctcal.onnx";

    /// <summary>Model families this plugin generates with (comma-separated, <see cref="CTCal.Core.Models.ModelFamily"/>).</summary>
    public const string Families = "sd1,sd2,sd3";

    /// <summary>ONNX Runtime execution providers compiled into this build (the <c>CTCalGpu</c> build switch), comma-separated.</summary>
#if CTCAL_GPU_DIRECTML
    public const string BuiltInExecutionProviders = "directml,cpu";
#elif CTCAL_GPU_CUDA
    public const string BuiltInExecutionProviders = "cuda,cpu";
#else
    public const string BuiltInExecutionProviders = "cpu";
#endif
    public const string GeneratorId = "ctcal.onnx.generator";
    public const string GeneratorName = "CTCal ONNX Runtime text-to-image";
    public const string ExporterId = "ctcal.onnx.exporter";
    public const string ExporterName = "CTCal safetensors to ONNX export";
    public const string FineTunerId = "ctcal.onnx.finetuner";
    public const string FineTunerName = "CTCal fine-tuning (ctcal-train sidecar)";
    public const string SubjectFinderId = "ctcal.subjects";
    public const string SubjectFinderName = "CTCal subjects of a prompt (lexicon, or a local ONNX Runtime GenAI model)";
}

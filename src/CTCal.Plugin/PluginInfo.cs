namespace CTCal.Plugin;

/// <summary>Metadata values of this plugin's exports (attribute arguments must be constants).</summary>
internal static class PluginInfo
{
    public const string Version = "0.1.0";
    public const string GeneratorId = "ctcal.onnx.generator";
    public const string GeneratorName = "CTCal ONNX Runtime text-to-image";
    public const string ExporterId = "ctcal.onnx.exporter";
    public const string ExporterName = "CTCal safetensors to ONNX export";
    public const string FineTunerId = "ctcal.onnx.finetuner";
    public const string FineTunerName = "CTCal fine-tuning (ctcal-train sidecar)";
    public const string SubjectFinderId = "ctcal.subjects";
    public const string SubjectFinderName = "CTCal subjects of a prompt (lexicon, or a local ONNX Runtime GenAI model)";
}

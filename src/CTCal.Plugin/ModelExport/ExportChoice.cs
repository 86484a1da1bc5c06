using CTCal.Export;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;

namespace CTCal.Plugin.ModelExport;

/// <summary>
/// What a one-click export writes (the contracts' <c>ModelExportRequest</c> carries no graph options, so the plugin's
/// settings decide): the export profile, the precision and whether the step-cache graphs are included.
/// </summary>
/// <param name="Optimize">The profile: <see cref="PluginSettings.ExportOptimize"/>, or for <c>auto</c> the one for the provider
/// this plugin runs on: <see cref="ExportOptimization.Cpu"/> on the CPU provider (parity with plain within 1e-4; 1.04-1.09x
/// faster per step in the bench's paired runs of the mid UNet and SD3 transformer, level at SD 1.5 size:
/// bench/CTCal.Bench.Inference/README.md), <see cref="ExportOptimization.Plain"/> on CUDA and DirectML (their fused profiles are
/// validated against the operator schemas but have not been run on a GPU by this project yet; name them to use them).</param>
/// <param name="Precision"><see cref="PluginSettings.ExportPrecision"/>.</param>
/// <param name="StepCacheBranch">The step-cache branch (<see cref="Branch"/>) when the graphs are included, else null.</param>
/// <param name="Reason">One line for the log: what was chosen and why.</param>
internal sealed record ExportChoice(ExportOptimization Optimize, ExportPrecision Precision, int? StepCacheBranch, string Reason)
{
    /// <summary>
    /// The branch of included step-cache graphs: 1, the shallowest (only the last up-block layer is recomputed), the one the
    /// main job's step-cache study chose on validation prompts for N = 2 (docs/main-job.md).
    /// </summary>
    public const int Branch = 1;

    /// <summary>
    /// The choice for an export of <paramref name="source"/> under <paramref name="settings"/>; <paramref name="provider"/>
    /// is asked only for <c>auto</c>.
    /// </summary>
    public static ExportChoice For(PluginSettings settings, string source, Func<ExecutionProviderKind> provider)
    {
        ExportOptimization optimize;
        string why;
        if (settings.ExportOptimize is { } named)
        {
            optimize = named;
            why = "exportOptimize setting";
        }
        else
        {
            var used = provider();
            optimize = used == ExecutionProviderKind.Cpu ? ExportOptimization.Cpu : ExportOptimization.Plain;
            why = $"auto for the {ExecutionProviderSelector.DisplayName(used)} provider";
        }

        bool sd3 = OnnxExporter.IsSD3Source(source);
        bool cache = !sd3 && (settings.ExportStepCache ?? settings.StepCache > 1);
        string cacheWhy = sd3 ? "none (SD3 has no UNet)"
            : cache ? $"branch {Branch} ({(settings.ExportStepCache is null ? $"stepCache {settings.StepCache}" : "exportStepCache true")})"
            : settings.ExportStepCache is null ? "none (stepCache 1)" : "none (exportStepCache false)";
        return new ExportChoice(optimize, settings.ExportPrecision, cache ? Branch : null,
            $"profile {ExportOptimizationNames.Name(optimize)} ({why}), precision {ExportPrecisionNames.Name(settings.ExportPrecision)}, step-cache graphs {cacheWhy}");
    }
}

using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// The <c>warmUp</c> setting's one tiny generation on freshly loaded sessions: an empty prompt, one denoising step with
/// classifier-free guidance (so the guidance path of the memory mode runs), the model's native size (the size a host
/// asks for most, so the arena grows to what a real request needs), VAE decode and PNG encode. What it warms is ONNX
/// Runtime's first-run work (thread pool start, arena growth, per-kernel set-up) in every session a text-to-image
/// request uses; the image is thrown away.
/// </summary>
internal static class ModelWarmUp
{
    /// <summary>Runs the warm-up generation on <paramref name="sessions"/>; returns its seconds.</summary>
    public static double Run(ModelSessions sessions, PluginSettings settings, CancellationToken cancellationToken)
    {
        var request = new GenerationRequest
        {
            Model = sessions.Model.Info.Id,
            Prompt = "",
            Steps = 1,
            GuidanceScale = 7.5,
            Seed = 0,
        };
        var parameters = OnnxImageGenerator.Resolve(request, sessions.Model.Info, settings.DefaultScheduler);
        var clock = Stopwatch.StartNew();
        StableDiffusionPipeline.Generate(sessions, parameters, null, request.PromptOverflow, settings.MemoryMode, [], null, cancellationToken, settings.IoBinding);
        return clock.Elapsed.TotalSeconds;
    }
}

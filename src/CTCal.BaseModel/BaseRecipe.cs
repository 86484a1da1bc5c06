using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Core.IO;
using CTCal.Trainer.Training;

namespace CTCal.BaseModel;

/// <summary>
/// BASE_RECIPE.json / BASE_RECIPE.md beside a trained base: the exact command, seed, step counts, wall time and losses, so
/// that the shipped weights can be reproduced (<c>--from-scratch</c>) and judged.
/// </summary>
public static class BaseRecipe
{
    public static void Write(string folder, string command, BaseModelConfig config, BaseTrainingOptions options, BaseTrainingResult result,
        IReadOnlyDictionary<string, string>? vaeRecipe = null)
    {
        var record = new Dictionary<string, object?>
        {
            ["command"] = command,
            ["family"] = result.Family.ToString().ToLowerInvariant(),
            ["seed"] = options.Seed,
            ["steps"] = result.Steps,
            ["resumed_at_step"] = result.ResumedAtStep,
            ["batch_size"] = options.BatchSize,
            ["lr"] = options.LearningRate,
            ["warmup"] = options.WarmupSteps,
            ["lr_schedule"] = options.LrSchedule.ToString().ToLowerInvariant(),
            ["ema_decay"] = options.EmaDecay,
            ["min_snr_gamma"] = options.MinSnrGamma,
            ["caption_dropout"] = options.CaptionDropout,
            ["prediction_type"] = PredictionType(config, result.Family),
        };
        if (result.Family == BaseFamily.SD3)
        {
            record["flow_shift"] = config.FlowShift;
            record["weighting_scheme"] = options.FlowMatching.WeightingScheme;
            record["logit_mean"] = options.FlowMatching.LogitMean;
            record["logit_std"] = options.FlowMatching.LogitStd;
        }
        foreach (var (key, value) in new Dictionary<string, object?>
        {
            [$"{Denoiser(result.Family)}_parameters"] = result.DenoiserParameters,
            ["text_encoder_parameters"] = result.TextParameters,
            ["final_loss"] = result.FinalLoss,
            ["seconds_per_step"] = result.SecondsPerStep,
            ["latent_cache_seconds"] = result.CacheSeconds,
            ["wall_seconds"] = result.WallSeconds,
            ["threads"] = TorchSharp.torch.get_num_threads(),
            ["processors"] = Environment.ProcessorCount,
            ["loss_curve"] = result.LossCurve.Select(p => new[] { p.Step, p.Loss }).ToList(),
            ["vae"] = vaeRecipe,
            ["config"] = JsonDocument.Parse(config.ToJson()).RootElement,
            ["finished_utc"] = DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture),
        })
            record[key] = value;
        AtomicFile.WriteText(Path.Combine(folder, "BASE_RECIPE.json"), JsonSerializer.Serialize(record, new JsonSerializerOptions { WriteIndented = true }));

        var md = new StringBuilder();
        md.AppendLine("# Base model recipe").AppendLine();
        md.AppendLine("Trained from scratch by the project's own trainer; rerun the command below to reproduce it.").AppendLine();
        md.AppendLine("```bash").AppendLine(command).AppendLine("```").AppendLine();
        if (result.ResumedAtStep > 0)
            md.AppendLine(CultureInfo.InvariantCulture, $"This command resumed from a checkpoint at step {result.ResumedAtStep}: the first {result.ResumedAtStep} steps were run by an earlier command (keep its recipe beside this one). Wall time and s/step cover this command only.").AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"- seed {options.Seed}, {result.Steps} steps of batch {options.BatchSize}, lr {options.LearningRate} ({options.LrSchedule.ToString().ToLowerInvariant()}, warmup {options.WarmupSteps}), EMA {options.EmaDecay}, min-SNR {options.MinSnrGamma?.ToString(CultureInfo.InvariantCulture) ?? "off"}, caption dropout {options.CaptionDropout}, {PredictionType(config, result.Family)}{FlowDetails(config, options, result.Family)}");
        md.AppendLine(CultureInfo.InvariantCulture, $"- family {result.Family.ToString().ToLowerInvariant()}; parameters: {Denoiser(result.Family)} {result.DenoiserParameters:N0}, text encoder(s) {result.TextParameters:N0}");
        md.AppendLine(CultureInfo.InvariantCulture, $"- final loss {result.FinalLoss:F5}; {result.SecondsPerStep:F3} s/step; wall {result.WallSeconds:F0} s (latent cache {result.CacheSeconds:F1} s) on {Environment.ProcessorCount} processors");
        if (vaeRecipe is not null)
            foreach (var (k, v) in vaeRecipe) md.AppendLine(CultureInfo.InvariantCulture, $"- vae {k}: {v}");
        md.AppendLine().AppendLine("| step | loss |").AppendLine("|---|---|");
        foreach (var (s, l) in result.LossCurve) md.AppendLine(CultureInfo.InvariantCulture, $"| {s} | {l:F5} |");
        AtomicFile.WriteText(Path.Combine(folder, "BASE_RECIPE.md"), md.ToString());
    }

    private static string Denoiser(BaseFamily family) => family == BaseFamily.SD3 ? "transformer" : "unet";

    private static string PredictionType(BaseModelConfig config, BaseFamily family) =>
        family == BaseFamily.SD3 ? FlowTrainingObjective.PredictionType : config.PredictionType;

    private static string FlowDetails(BaseModelConfig config, BaseTrainingOptions options, BaseFamily family) => family == BaseFamily.SD3
        ? string.Create(CultureInfo.InvariantCulture, $" (shift {config.FlowShift}, {options.FlowMatching.WeightingScheme} {options.FlowMatching.LogitMean}/{options.FlowMatching.LogitStd})")
        : "";
}

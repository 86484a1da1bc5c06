using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using CTCal.Trainer.Training;
using NLog;
using Spectre.Console;

namespace CTCal.Trainer.Cli;

/// <summary>Forwards training events to several observers.</summary>
public sealed class CompositeObserver(params ITrainingObserver[] observers) : ITrainingObserver
{
    public void Started(TrainingStart start) { foreach (var o in observers) o.Started(start); }
    public void StepDone(StepReport report) { foreach (var o in observers) o.StepDone(report); }
    public void CheckpointSaved(long step, string path) { foreach (var o in observers) o.CheckpointSaved(step, path); }
    public void ValidationSaved(long step, string path) { foreach (var o in observers) o.ValidationSaved(step, path); }
    public void Message(string level, string text) { foreach (var o in observers) o.Message(level, text); }
}

/// <summary>Writes every event to the NLog log (always on; the file target keeps the full history).</summary>
public sealed class LogObserver : ITrainingObserver
{
    private static readonly Logger Log = LogManager.GetLogger("ctcal-train");

    public void Started(TrainingStart s) => Log.Info(CultureInfo.InvariantCulture,
        "start: method {0}, {1} records ({2} skipped, {3} without nouns), {4} trainable parameters, steps {5}..{6}, layers [{7}]",
        s.Method, s.Records, s.SkippedRecords, s.RecordsWithoutNouns, s.TrainableParameters, s.StartStep, s.TotalSteps, string.Join(", ", s.CalibratedLayers));

    public void StepDone(StepReport r) => Log.Debug(CultureInfo.InvariantCulture,
        "step {0}/{1}: loss {2:G5} (diffusion {3:G5}, ctcal {4:G5}: pixel {5:G4}, semantic {6:G4}, recon {7:G4}, balance {8:G4}) lr {9:G3} grad {10:G3}{11} {12:F3}s{13}",
        r.Step, r.TotalSteps, r.Loss, r.Diffusion, r.Ctcal, r.Pixel, r.Semantic, r.Reconstruction, r.Balance, r.LearningRate, r.GradNorm,
        r.Skipped ? " SKIPPED" : "", r.Seconds, StudyText(r));

    /// <summary>The study measures of a measured step for the log line ("" on other steps).</summary>
    private static string StudyText(StepReport r) => r.AlignNouns is null ? ""
        : string.Create(CultureInfo.InvariantCulture,
            $" | align kl {r.AlignKl:G4} cos {r.AlignCos:G4} entropy {r.AlignEntropy:G4} over {r.AlignNouns} nouns | grad diffusion {r.GradDiffusion:G4} ctcal {r.GradCtcal:G4} reconstruction {r.GradReconstruction:G4}");

    public void CheckpointSaved(long step, string path) => Log.Info("checkpoint at step {0}: {1}", step, path);
    public void ValidationSaved(long step, string path) => Log.Info("validation images at step {0}: {1}", step, path);
    public void Message(string level, string text)
    {
        if (level == "warn") Log.Warn(text); else Log.Info(text);
    }
}

/// <summary>
/// <c>--progress json</c>: one JSON object per line on stdout (schema in docs/trainer.md): <c>start</c>, <c>step</c>,
/// <c>checkpoint</c>, <c>validation</c>, <c>message</c>; the command itself writes <c>done</c> or <c>error</c> last.
/// </summary>
public sealed class JsonLinesObserver(TextWriter output) : ITrainingObserver
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // plain '+', '<', quotes escaped as JSON requires
    };
    private readonly object _gate = new();
    private DateTime _started = DateTime.UtcNow;
    private long _firstStep;

    public void Write(string eventName, object payload)
    {
        var node = JsonSerializer.SerializeToNode(payload, Options)!.AsObject();
        node.Insert(0, "event", eventName);
        node.Insert(1, "time", DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture));
        lock (_gate)
        {
            output.WriteLine(node.ToJsonString(Options));
            output.Flush();
        }
    }

    public void Started(TrainingStart s)
    {
        _started = DateTime.UtcNow;
        _firstStep = s.StartStep;
        Write("start", s);
    }

    public void StepDone(StepReport r)
    {
        double elapsed = (DateTime.UtcNow - _started).TotalSeconds;
        long done = r.Step - _firstStep;
        double rate = elapsed > 0 ? done / elapsed : 0;
        double? eta = rate > 0 ? (r.TotalSteps - r.Step) / rate : null;
        Write("step", new
        {
            r.Step, r.TotalSteps, r.Loss, r.Diffusion, r.Ctcal, r.Pixel, r.Semantic, r.Reconstruction, r.Balance,
            Lr = r.LearningRate, r.GradNorm, r.AutoencoderGradNorm, r.Skipped, r.Nouns, r.DiffusionOnlySamples, r.Seconds, ItPerS = rate, EtaS = eta,
            r.AlignKl, r.AlignCos, r.AlignEntropy, r.AlignNouns, r.GradDiffusion, r.GradCtcal, r.GradReconstruction,
        });
    }

    public void CheckpointSaved(long step, string path) => Write("checkpoint", new { Step = step, Path = path });
    public void ValidationSaved(long step, string path) => Write("validation", new { Step = step, Path = path });
    public void Message(string level, string text) => Write("message", new { Level = level, Text = text });
}

/// <summary>The terminal progress bar (Spectre.Console): step, loss and its parts, it/s, ETA.</summary>
public sealed class ProgressBarObserver(ProgressTask task) : ITrainingObserver
{
    public void Started(TrainingStart s)
    {
        task.MaxValue = s.TotalSteps;
        task.Value = s.StartStep;
    }

    public void StepDone(StepReport r)
    {
        task.Value = r.Step;
        string text = r.Ctcal != 0 || r.Nouns > 0
            ? string.Create(CultureInfo.InvariantCulture, $"loss {r.Loss:F4} = diff {r.Diffusion:F4} + ctcal {r.Ctcal:F4} (px {r.Pixel:G3} sem {r.Semantic:G3} rec {r.Reconstruction:G3} bal {r.Balance:G3})")
            : string.Create(CultureInfo.InvariantCulture, $"loss {r.Loss:F4}");
        task.Description = Markup.Escape(r.Skipped ? text + " skipped" : text);
    }

    public void CheckpointSaved(long step, string path) => AnsiConsole.MarkupLine($"[grey]checkpoint {step}: {Markup.Escape(path)}[/]");
    public void ValidationSaved(long step, string path) => AnsiConsole.MarkupLine($"[grey]validation {step}: {Markup.Escape(path)}[/]");
    public void Message(string level, string text) => AnsiConsole.MarkupLine(level == "warn" ? $"[yellow]{Markup.Escape(text)}[/]" : Markup.Escape(text));
}

/// <summary>Plain text lines on stderr when stdout is not a terminal and JSON was not asked for (every 10th step).</summary>
public sealed class PlainObserver(TextWriter output) : ITrainingObserver
{
    public void Started(TrainingStart s) => output.WriteLine($"training {s.Method}: {s.Records} records, steps {s.StartStep}..{s.TotalSteps}");
    public void StepDone(StepReport r)
    {
        if (r.Step % 10 == 0 || r.Step == r.TotalSteps || r.Skipped)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"step {r.Step}/{r.TotalSteps} loss {r.Loss:F5} diffusion {r.Diffusion:F5} ctcal {r.Ctcal:F5}{(r.Skipped ? " skipped" : "")}"));
    }
    public void CheckpointSaved(long step, string path) => output.WriteLine($"checkpoint {step}: {path}");
    public void ValidationSaved(long step, string path) => output.WriteLine($"validation {step}: {path}");
    public void Message(string level, string text) => output.WriteLine($"{level}: {text}");
}

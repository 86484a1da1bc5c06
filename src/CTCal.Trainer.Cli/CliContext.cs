using CTCal.Core.Checkpoints;
using CTCal.Core.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using NLog;

namespace CTCal.Trainer.Cli;

/// <summary>
/// What every verb of <c>ctcal-train</c> shares: the stdout/stderr writers, the model loader, the cancellation source, the
/// log, and the one mapping of an exception to an exit code (<see cref="Fail"/>).
/// </summary>
internal sealed class CliContext(Func<string, ITrainableDiffusionModel> loadModel, TextWriter stdout, TextWriter stderr)
{
    public static readonly Logger Log = LogManager.GetLogger("ctcal-train");

    /// <summary>Loads a diffusers model folder (the real tool) or a test model.</summary>
    public Func<string, ITrainableDiffusionModel> LoadModel { get; } = loadModel;

    /// <summary>Loads an original single-file checkpoint with its options (the real tool); null: <see cref="LoadModel"/> loads it.</summary>
    public Func<string, SingleFileOptions?, ITrainableDiffusionModel>? LoadSingleFile { get; init; }

    /// <summary><see cref="LoadSingleFile"/> for an existing file when there is one, else <see cref="LoadModel"/>.</summary>
    public ITrainableDiffusionModel LoadModelOrSingleFile(string model, SingleFileOptions? options) =>
        File.Exists(model) && LoadSingleFile is { } load ? load(model, options) : LoadModel(model);

    public TextWriter Out { get; } = stdout;

    public TextWriter Err { get; } = stderr;

    /// <summary>Cancelled by Ctrl+C / SIGTERM in the real tool; tests may cancel it themselves.</summary>
    public CancellationTokenSource Cancellation { get; } = new();

    /// <summary>Maps an exception to an exit code and reports it (stderr, log, and the JSON stream when one is open).</summary>
    public int Fail(Exception e, JsonLinesObserver? json)
    {
        int code = e switch
        {
            TrainingDivergedException => ExitCodes.Diverged,
            OutputWriteException => ExitCodes.OutputNotWritable,
            OperationCanceledException => ExitCodes.Cancelled,
            UsageException or DatasetException or DiffusersConfigException or ModelFolderException or UnsafePathException
                or SafetensorsException or ArgumentException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException => ExitCodes.BadInput,
            _ => ExitCodes.Error,
        };
        string kind = code switch
        {
            ExitCodes.Diverged => TrainerErrorKinds.Diverged, ExitCodes.OutputNotWritable => TrainerErrorKinds.OutputNotWritable,
            ExitCodes.BadInput => TrainerErrorKinds.BadInput, ExitCodes.Cancelled => TrainerErrorKinds.Cancelled, _ => TrainerErrorKinds.Error,
        };
        if (code == ExitCodes.Error) Log.Error(e, "ctcal-train failed");
        else Log.Error("{0}: {1}", kind, e.Message);
        json?.Write("error", new { Kind = kind, e.Message, ExitCode = code });
        Err.WriteLine(code == ExitCodes.Error ? $"error: {e}" : $"error: {e.Message}");
        return code;
    }

    /// <summary>Runs a verb's action; an exception becomes its exit code through <see cref="Fail"/>.</summary>
    public int Guarded(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e)
        {
            return Fail(e, null);
        }
    }

    /// <summary>A progress line: to the log and to stderr.</summary>
    public void Info(string line)
    {
        Log.Info(line);
        Err.WriteLine(line);
    }

    /// <summary>Refuses an output folder that is, contains or lies inside a folder the command reads (exit 2, naming both).</summary>
    public static void RefuseOverlap(string output, string input, string inputOption)
    {
        if (PathGuard.Overlaps(output, input))
            throw new UsageException($"--out '{output}' must not be, contain or lie inside {inputOption} '{Path.GetFullPath(input)}': the run would write into what it reads");
    }

    /// <summary>Sets torch's CPU threads (0: the library default).</summary>
    public static void SetThreads(int threads)
    {
        if (threads < 0) throw new UsageException($"--threads must be >= 0, got {threads}");
        if (threads > 0) TorchSharp.torch.set_num_threads(threads);
    }
}

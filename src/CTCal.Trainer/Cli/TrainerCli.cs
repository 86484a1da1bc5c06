using System.CommandLine;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using NLog;

namespace CTCal.Trainer.Cli;

/// <summary>
/// The <c>ctcal-train</c> command line: <c>train</c>, <c>merge</c>, <c>bench</c>, <c>base</c>. Models are loaded through the given
/// loader (a diffusers folder in the real tool; tests pass a small model). Writers are the process's stdout/stderr unless given.
/// </summary>
public sealed partial class TrainerCli
{
    private static readonly Logger Log = LogManager.GetLogger("ctcal-train");
    private readonly Func<string, ITrainableDiffusionModel> _loadModel;
    private readonly TextWriter _out;
    private readonly TextWriter _err;

    public TrainerCli(Func<string, ITrainableDiffusionModel> loadModel, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        _loadModel = loadModel;
        _out = stdout ?? Console.Out;
        _err = stderr ?? Console.Error;
    }

    /// <summary>Cancelled by Ctrl+C / SIGTERM in the real tool; tests may cancel it themselves.</summary>
    public CancellationTokenSource Cancellation { get; } = new();

    public int Run(string[] args)
    {
        var root = new RootCommand("ctcal-train: CTCal (cross-timestep self-calibration) and vanilla fine-tuning of Stable Diffusion 1.x/2.x models (diffusers folders, safetensors).");
        root.Subcommands.Add(BuildTrainCommand());
        root.Subcommands.Add(BuildMergeCommand());
        root.Subcommands.Add(BuildBenchCommand());
        root.Subcommands.Add(BuildBaseCommand(args));
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors) _err.WriteLine($"error: {error.Message}");
            _err.WriteLine("Run 'ctcal-train --help' (or '<command> --help') for usage.");
            return ExitCodes.BadInput;
        }
        return parse.Invoke(new InvocationConfiguration { Output = _out, Error = _err, EnableDefaultExceptionHandler = false });
    }

    /// <summary>Maps an exception to an exit code and reports it (stderr, log, and the JSON stream when one is open).</summary>
    private int Fail(Exception e, JsonLinesObserver? json)
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
        string kind = code switch { ExitCodes.Diverged => "diverged", ExitCodes.OutputNotWritable => "output_not_writable", ExitCodes.BadInput => "bad_input", ExitCodes.Cancelled => "cancelled", _ => "error" };
        if (code == ExitCodes.Error) Log.Error(e, "ctcal-train failed");
        else Log.Error("{0}: {1}", kind, e.Message);
        json?.Write("error", new { Kind = kind, e.Message, ExitCode = code });
        _err.WriteLine(code == ExitCodes.Error ? $"error: {e}" : $"error: {e.Message}");
        return code;
    }
}

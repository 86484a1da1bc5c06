using System.CommandLine;
using CTCal.Core.Checkpoints;
using CTCal.Trainer.Training;

namespace CTCal.Trainer.Cli;

/// <summary>
/// The <c>ctcal-train</c> command line: assembles the root command from one class per verb (<see cref="TrainVerb"/>,
/// <see cref="MergeVerb"/>, <see cref="BenchVerb"/>, <see cref="BaseVerb"/>, <see cref="ProbeVerb"/>, <see cref="SubjectsVerb"/>) and parses. Models are loaded through the given
/// loader (a diffusers folder in the real tool; tests pass a small model). Writers are the process's stdout/stderr unless given.
/// </summary>
public sealed class TrainerCli
{
    private readonly CliContext _context;

    /// <param name="loadModel">Loads a model folder (or a test model).</param>
    /// <param name="stdout">Standard output (default: the console).</param>
    /// <param name="stderr">Standard error (default: the console).</param>
    /// <param name="loadSingleFile">Loads an original single-file checkpoint with the job's single-file options; without it
    /// a single file goes to <paramref name="loadModel"/>.</param>
    public TrainerCli(Func<string, ITrainableDiffusionModel> loadModel, TextWriter? stdout = null, TextWriter? stderr = null,
        Func<string, SingleFileOptions?, ITrainableDiffusionModel>? loadSingleFile = null)
    {
        _context = new CliContext(loadModel, stdout ?? Console.Out, stderr ?? Console.Error) { LoadSingleFile = loadSingleFile };
    }

    /// <summary>Cancelled by Ctrl+C / SIGTERM in the real tool; tests may cancel it themselves.</summary>
    public CancellationTokenSource Cancellation => _context.Cancellation;

    public int Run(string[] args)
    {
        var root = new RootCommand("ctcal-train: CTCal (cross-timestep self-calibration) and vanilla fine-tuning of Stable Diffusion 1.x/2.x models (diffusers folders, safetensors).");
        root.Subcommands.Add(new TrainVerb(_context).Build());
        root.Subcommands.Add(new MergeVerb(_context).Build());
        root.Subcommands.Add(new BenchVerb(_context).Build());
        root.Subcommands.Add(new BaseVerb(_context, args).Build());
        root.Subcommands.Add(new ProbeVerb(_context, args).Build());
        root.Subcommands.Add(new SubjectsVerb(_context).Build());
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors) _context.Err.WriteLine($"error: {error.Message}");
            _context.Err.WriteLine("Run 'ctcal-train --help' (or '<command> --help') for usage.");
            return ExitCodes.BadInput;
        }
        return parse.Invoke(new InvocationConfiguration { Output = _context.Out, Error = _context.Err, EnableDefaultExceptionHandler = false });
    }
}

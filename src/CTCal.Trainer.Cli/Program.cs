using System.Runtime.InteropServices;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Training;

// ctcal-train entry point: SD3 diffusers folders load as SD3TrainableModel, other folders and original single-file
// checkpoints with DiffusersTrainableModel
// (what a single file's configs assumed is logged); Ctrl+C and SIGTERM request a clean stop (the current step finishes, a
// checkpoint is written, exit code 130).
var cli = new TrainerCli(TrainableModels.Load,
    loadSingleFile: (path, options) => DiffusersTrainableModel.LoadSingleFile(path, options, note => CliContext.Log.Info("single file {0}: {1}", path, note)));
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cli.Cancellation.Cancel();
};
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    cli.Cancellation.Cancel();
});
int code = cli.Run(args);
NLog.LogManager.Shutdown();
return code;

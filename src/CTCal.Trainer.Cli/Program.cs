using System.Runtime.InteropServices;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Training;

// ctcal-train entry point: diffusers folders are loaded with DiffusersTrainableModel; Ctrl+C and SIGTERM request a clean
// stop (the current step finishes, a checkpoint is written, exit code 130).
var cli = new TrainerCli(DiffusersTrainableModel.Load);
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

using CTCal.MainJob;
using NLog;
using Spectre.Console;

// ctcal-main: README command 1. Logging from the nlog.config beside the executable (warnings on stderr, everything in
// <out>/main.log); progress and results through Spectre.Console.
try
{
    using var cancel = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        cancel.Cancel();
    };
    if (Console.IsOutputRedirected)
    {
        AnsiConsole.Console.Profile.Width = 200; // a log file: no wrapping of tables and long lines at 80 columns
    }

    return await MainJobCli.RunAsync(args, AnsiConsole.Console, cancel.Token);
}
finally
{
    LogManager.Shutdown();
}

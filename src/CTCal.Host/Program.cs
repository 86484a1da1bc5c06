using System.Runtime.InteropServices;
using CTCal.Host.Cli;
using CTCal.Hosting;
using NLog;

// ctcal-host: Ctrl+C and SIGTERM cancel the running verb (exit code 130). Logging comes from the nlog.config copied
// beside the executable (build/nlog.config: console + rolling file).
try
{
    var root = HostCommands.Build(Console.Out, new NLogSink("ctcal-host"), id => new NLogSink($"plugin.{id}"));
    using var cancel = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        cancel.Cancel();
    };
    // SIGTERM (a service manager stopping the host, 'kill') cancels like Ctrl+C: the verb stops and exits with 130.
    using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
    {
        context.Cancel = true;
        cancel.Cancel();
    });
    return await root.Parse(args).InvokeAsync(cancellationToken: cancel.Token);
}
finally
{
    LogManager.Shutdown();
}
